"""The wire protocol between agent, task server and notification server.

Standard library only: the agent imports this on every managed computer.
"""
