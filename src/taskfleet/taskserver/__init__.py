"""The task server: a relay near the clients (SPEC section 1).

It never touches the database: it talks only to the NS API. The agent-facing
half (``agent_api``) is shared with the NS, which serves agents itself as
the last fallback of R3.
"""
