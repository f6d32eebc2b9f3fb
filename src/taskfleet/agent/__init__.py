"""The agent: on every managed computer; enrols, polls, runs tasks, reports status.

It imports only the wire protocol, its own code, httpx and the standard
library, so it stays small (SPEC section 6).
"""
