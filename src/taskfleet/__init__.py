"""taskfleet: deliver tasks to computers through relay task servers, bring every result back.

Kept import-free on purpose: the agent imports this package on every managed
computer and must stay small (SPEC section 6).
"""

__version__ = "0.1.0"
