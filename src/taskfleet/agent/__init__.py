"""The agent: on every managed computer; enrols, polls, runs tasks, reports status.

It imports only the wire protocol, its own code, httpx and the standard
library, so it stays small (SPEC section 6).
"""

import sys

# httpx imports its optional command-line tool (click, rich, pygments: about 5 MiB)
# whenever those happen to be installed. The agent never uses it; an entry of None
# makes that optional import fail fast, as if they were absent.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
