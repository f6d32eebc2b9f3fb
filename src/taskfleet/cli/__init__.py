"""The ``taskfleet`` command line (SPEC section 4)."""
