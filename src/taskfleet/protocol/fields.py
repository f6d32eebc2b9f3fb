"""What each field of a message may hold: the constrained types every edge checks (R12).

A value that passes here can be stored by SQLite and PostgreSQL alike and shown by
the console, so one bad field is refused where it enters (400 naming the field)
instead of failing later in a batch shared with other nodes' messages.

- **Text** is valid Unicode: no NUL (U+0000, which PostgreSQL cannot store) and no
  lone surrogate (U+D800-U+DFFF, which no UTF-8 encoder accepts); its length is
  bounded. Such text is *refused*.
- **Script output** is the exception: a script may print anything, and its result
  must still arrive. The agent makes captured bytes printable when it reads them
  (``printable_output``): NUL becomes U+2400 (the visible symbol for NUL, so the
  console shows where the script wrote one) and bytes that are not UTF-8 become
  U+FFFD. Servers do the same to any output a peer sends (``Output``): output is
  *escaped*, never refused for its characters.
- **Floats** are finite; times lie between 1970 and the year 9999 (the console can
  show them).
- **Integers** fit their column: 32-bit for ``Integer`` columns (``Int32``, ids are
  1..2**31-1), 64-bit where a column is ``BigInteger`` (``Int64``).
- **Ids and names** have a bounded length; ids also a small alphabet.
- **Lists and maps** have a bounded number of entries.

Standard library only: the agent imports the protocol, and must not pay for pydantic.
Each constraint is a marker in ``typing.Annotated`` that pydantic turns into checks
when a server builds its schema (``__get_pydantic_core_schema__``, called lazily),
and that the OpenAPI document shows (maxLength, pattern, minimum, maximum).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_ID = INT32_MAX  # integer ids are 32-bit columns (storage.models)
LATEST_TIME = 253402300799.0  # 9999-12-31T23:59:59Z, the last instant datetime can show

NUL_SYMBOL = "\u2400"  # what a NUL in script output is shown as
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
_ID = re.compile(ID_PATTERN)
_SURROGATES = re.compile("[\ud800-\udfff]")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None when it can."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    at = found.start()
    if found.group() == "\x00":
        return f"holds a NUL character (\\u0000) at position {at}; remove it"
    return (
        f"holds a lone UTF-16 surrogate (\\u{ord(found.group()):04x}) at position {at}, "
        "which is not valid Unicode"
    )


def printable(value: str) -> str:
    """``value`` made storable, faithfully where it can be: NUL -> U+2400, a lone
    surrogate -> U+FFFD. For script output only; other text is refused instead."""
    if _UNSTORABLE.search(value) is None:
        return value
    return _SURROGATES.sub("\ufffd", value.replace("\x00", NUL_SYMBOL))


# Script output kept per instance: what the agent configuration sets (``output_limit_kib``,
# per collection), at most ``MAX_OUTPUT_LIMIT``. Every hop cuts a longer output to its
# limit and appends the marker, so a cut is always visible and no hop holds more.
DEFAULT_OUTPUT_LIMIT = 1024 * 1024
MAX_OUTPUT_LIMIT = 4 * 1024 * 1024
TRUNCATION_MARKER = "\n[... output truncated by taskfleet: {dropped} bytes not shown ...]\n"
_MARKER_ROOM = 128  # a marker already appended (its number has up to 20 digits) fits in this


def capped_output(value: str, limit: int) -> str:
    """``value`` cut to ``limit`` characters plus the truncation marker; unchanged when it
    fits, a marker an earlier hop appended included (so a cut is never cut again)."""
    if len(value) <= limit + _MARKER_ROOM:
        return value
    dropped = len(value[limit:].encode("utf-8", "replace"))
    return value[:limit] + TRUNCATION_MARKER.format(dropped=dropped)


def printable_output(data: bytes) -> str:
    """Bytes a script wrote, as text every store and the console take (see module doc)."""
    return data.decode("utf-8", errors="replace").replace("\x00", NUL_SYMBOL)


def fit_return_code(code: int | None) -> int | None:
    """A process's exit status as a signed 32-bit integer (the column it is stored in).

    Windows reports exit codes as unsigned 32-bit (0xC0000005 is 3221225477): they are
    kept as the same 32 bits, signed, as Windows tools show them (-1073741819). Anything
    wider is clamped.
    """
    if code is None:
        return None
    if 2**31 <= code < 2**32:
        return code - 2**32
    return max(INT32_MIN, min(INT32_MAX, code))


# --- the markers pydantic reads -------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """Core-schema constraints (``max_length``, ``pattern``, ``ge``, ``le``, ...) on the
    type it annotates, plus ``storable`` text (refused) or ``escaped`` text (output)."""

    max_length: int | None = None
    min_length: int | None = None
    pattern: str | None = None
    ge: float | None = None
    le: float | None = None
    finite: bool = False
    storable: bool = False
    escaped: bool = False

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import PydanticCustomError, core_schema

        schema = dict(handler(source))
        for key in ("max_length", "min_length", "pattern", "ge", "le"):
            value = getattr(self, key)
            if value is not None:
                schema[key] = value
        if self.finite:
            schema["allow_inf_nan"] = False
        if self.escaped:
            return core_schema.no_info_after_validator_function(_escaped_output, schema)
        if not self.storable:
            return schema

        def check(value: str) -> str:
            problem = text_problem(value)
            if problem is not None:
                raise PydanticCustomError("text_unstorable", problem)
            return value

        # Before pydantic's own str check, which would only say "not a valid string"
        # of a lone surrogate; a plain function schema keeps the constraints in OpenAPI.
        return core_schema.no_info_before_validator_function(_storable_first(check), schema)


def _escaped_output(value: str) -> str:
    return capped_output(printable(value), MAX_OUTPUT_LIMIT)


def _storable_first(check: Any) -> Any:
    def before(value: Any) -> Any:
        return check(value) if isinstance(value, str) else value

    return before


def text(max_length: int, min_length: int = 0) -> Limits:
    return Limits(max_length=max_length, min_length=min_length or None, storable=True)


# --- the types ------------------------------------------------------------------------

Int32 = Annotated[int, Limits(ge=INT32_MIN, le=INT32_MAX)]
Int64 = Annotated[int, Limits(ge=INT64_MIN, le=INT64_MAX)]
RowId = Annotated[int, Limits(ge=1, le=MAX_ID)]  # a row's id: 1 .. 2**31-1
Count = Annotated[int, Limits(ge=0, le=INT32_MAX)]  # how many of something
Finite = Annotated[float, Limits(finite=True)]
Time = Annotated[float, Limits(finite=True, ge=0, le=LATEST_TIME)]  # UNIX seconds
# A unique id a node makes up (status event ids: uuid4 hex, 32 characters).
EventId = Annotated[str, Limits(min_length=1, max_length=64, pattern=ID_PATTERN, storable=True)]
# A name a person gives (collections, sites, tasks, tokens, task servers, computers).
Name = Annotated[str, Limits(min_length=1, max_length=255, storable=True)]
ShortText = Annotated[str, text(255)]  # a fact, an OS, a version: shown, compared
LongText = Annotated[str, text(64 * 1024)]  # a reason, a description
StateName = Annotated[str, Limits(min_length=1, max_length=32, pattern=ID_PATTERN, storable=True)]
# Script output: escaped, not refused (NUL -> U+2400); cut to MAX_OUTPUT_LIMIT characters
# with the truncation marker, never refused for its length either.
Output = Annotated[str, Limits(escaped=True)]


def is_event_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64 and _ID.match(value) is not None


def bounded_list(max_length: int) -> Limits:
    """``Annotated[list[X], bounded_list(n)]``: at most ``n`` entries."""
    return Limits(max_length=max_length)
