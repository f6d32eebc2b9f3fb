"""The fleet simulator: many lightweight agents in one process (SPEC section 6).

Each simulated agent speaks the real protocol over real HTTP, exactly as an
agent does: it enrols with a token, asks the NS for its task server, keeps a
notification channel open there, polls, reports status and fails over after
three failed attempts (R4). It runs no scripts; a scripted behaviour decides
each task's outcome (``behaviour``). ``taskfleet simulate`` drives it, and so
does ``bench/fanout.py``; an administrator uses it to size a deployment before
rolling agents out.

It imports the wire protocol and its own code only: never the NS, the task
server or storage. It uses aiohttp rather than httpx because one process holds
thousands of open connections; httpx's pool is built for a few.
"""
