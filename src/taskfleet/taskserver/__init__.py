"""The task server: a relay near the clients (SPEC section 1).

It never touches the database: it talks only to the NS API. The agent-facing
half is ``taskfleet.agent_endpoints``, which the NS serves too, as the last
fallback of R3.
"""
