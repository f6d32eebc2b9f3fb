"""``python -m taskfleet``: the same as the ``taskfleet`` command."""

from taskfleet.entrypoint import main

main()
