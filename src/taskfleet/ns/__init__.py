"""The notification server: the one authority (SPEC section 1)."""
