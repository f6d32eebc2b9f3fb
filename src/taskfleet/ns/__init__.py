"""The notification server: the one authority (SPEC section 1)."""

# Installs the flush hooks that keep stored collection membership true, whichever NS
# module changes computers, task servers or collections (see membership.py).
from taskfleet.ns import membership as membership
