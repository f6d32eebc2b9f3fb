"""What agents call, served both by a task server and by the NS in its fallback role (R3).

``api`` (poll, notification channel, status), ``files`` (copy-file tasks' files),
``channels`` (how many channels may be open), ``tickle`` (waking an agent's channel)
and ``work_source`` (the interface each server implements behind the endpoints:
``taskserver.relay.Relay``, ``ns.local_role.LocalRole``). Both servers import this
package; it imports neither of them.
"""
