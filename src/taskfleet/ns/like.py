"""Text a person typed, matched literally by SQL ``LIKE``: one escaping for every search."""

from __future__ import annotations

# The escape character each pattern below declares (``.like(p, escape=ESCAPE)``).
ESCAPE = "\\"


def literal(text: str) -> str:
    """``text`` with LIKE's wildcards (``%``, ``_``) and the escape character itself
    escaped, so "100%" finds "100%-pc" and not every row."""
    return text.replace(ESCAPE, ESCAPE * 2).replace("%", ESCAPE + "%").replace("_", ESCAPE + "_")


def containing(text: str) -> str:
    return f"%{literal(text)}%"


def starting_with(text: str) -> str:
    return f"{literal(text)}%"
