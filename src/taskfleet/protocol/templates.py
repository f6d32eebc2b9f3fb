"""Placeholders in a run-script task, filled in on the agent just before the script runs.

A placeholder is ``{{ scope.NAME }}`` (spaces inside the braces are optional):

    {{computer.name}}   the computer's name        {{run.id}}        the run's number
    {{computer.ip}}     its primary IPv4 address   {{param.NAME}}    a declared parameter
    {{fact.NAME}}       one of its inventory facts (empty when the computer lacks it)

Every ``{{ ... }}`` in a script, working directory or environment value must be one
of these: anything else (``{{computer.nme}}``, an undeclared ``{{param.X}}``) is
refused when the task is saved, never discovered on the computer. A literal ``{{``
is written ``{{"{{"}}`` (a lone ``{`` or ``}}`` needs nothing); ``escape`` does it.

The NS caches each run's task once per task server (``RunTask``), so per-computer
values cannot be filled in there: the agent renders with its own facts. Pure
functions, no I/O: the agent and the NS share them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# What a secret parameter's value is replaced by wherever it would be shown.
SECRET_MASK = "••••••"
LITERAL_BRACES = '"{{"'
SCOPES = ("computer", "run", "param", "fact")
FIXED = {"computer": ("name", "ip"), "run": ("id",)}
# One ``{{ ... }}`` on one line; its inside decides what it is.
_TOKEN = re.compile(r"\{\{(.*?)\}\}")
_PLACEHOLDER = re.compile(r"^\s*([a-z]+)\.([A-Za-z0-9_.-]{1,128})\s*$")
_LITERAL = re.compile(r'^\s*"\{\{"\s*$')


class TemplateError(ValueError):
    """A ``{{ ... }}`` that is not a placeholder taskfleet knows."""


@dataclass(frozen=True)
class Values:
    """What a placeholder may become on one computer, for one run."""

    computer_name: str = ""
    computer_ip: str = ""
    run_id: int = 0
    params: Mapping[str, str] | None = None
    facts: Mapping[str, str] | None = None


def _parse(inside: str) -> tuple[str, str] | None:
    """``(scope, name)`` of a placeholder; ``None`` for the literal ``{{``."""
    if _LITERAL.match(inside):
        return None
    found = _PLACEHOLDER.match(inside)
    if found is None or found.group(1) not in SCOPES:
        raise TemplateError(
            f"{{{{{inside}}}}} is not a placeholder; use computer.name, computer.ip, "
            'run.id, param.NAME or fact.NAME (a literal {{ is written {{"{{"}})'
        )
    scope, name = found.groups()
    if scope in FIXED and name not in FIXED[scope]:
        known = ", ".join(f"{scope}.{n}" for n in FIXED[scope])
        raise TemplateError(f"{{{{{inside}}}}} is not a placeholder; {scope} has {known}")
    return scope, name


def placeholders(text: str) -> list[tuple[str, str]]:
    """Every placeholder in ``text`` as ``(scope, name)``; TemplateError on a bad one."""
    found = []
    for match in _TOKEN.finditer(text):
        parsed = _parse(match.group(1))
        if parsed is not None:
            found.append(parsed)
    return found


def check(text: str, declared: Iterable[str]) -> None:
    """Refuse a template with an unknown placeholder or an undeclared parameter."""
    names = set(declared)
    for scope, name in placeholders(text):
        if scope == "param" and name not in names:
            raise TemplateError(
                f"{{{{param.{name}}}}} names no declared parameter"
                + (f" (declared: {', '.join(sorted(names))})" if names else "")
            )


def render(text: str, values: Values) -> str:
    """``text`` with every placeholder replaced; a parameter or fact not given is empty.

    A template that was checked when its task was saved renders without error; an
    unchecked one raises TemplateError on a bad placeholder.
    """

    def one(match: re.Match[str]) -> str:
        parsed = _parse(match.group(1))
        if parsed is None:
            return "{{"
        scope, name = parsed
        if scope == "computer":
            return values.computer_name if name == "name" else values.computer_ip
        if scope == "run":
            return str(values.run_id)
        source = values.params if scope == "param" else values.facts
        return str((source or {}).get(name, ""))

    return _TOKEN.sub(one, text)


def escape(text: str) -> str:
    """``text`` as a template that renders back to itself."""
    return text.replace("{{", '{{"{{"}}')


def mask(text: str, secrets: Iterable[str], *, cut: bool = False) -> str:
    """``text`` with every secret value replaced by SECRET_MASK, longest first (so a
    secret holding another is masked whole). Empty secrets are left alone.

    ``cut``: the text was cut short at its end (the output limit), so it may end with
    the beginning of a secret: that is masked too.
    """
    found = sorted({s for s in secrets if s}, key=len, reverse=True)
    for secret in found:
        text = text.replace(secret, SECRET_MASK)
    if cut:
        for secret in found:
            for size in range(len(secret) - 1, 0, -1):
                if text.endswith(secret[:size]):
                    return text[:-size] + SECRET_MASK
    return text
