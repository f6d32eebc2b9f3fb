"""``python -m taskfleet.agent ...``: the same as ``taskfleet agent run ...``."""

import sys

from taskfleet.agent.cli import main

sys.exit(main())
