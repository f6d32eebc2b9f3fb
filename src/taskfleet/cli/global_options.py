"""``--ns``, ``--credential`` and ``--json`` wherever a person types them.

``taskfleet --ns URL run-list --json`` and ``taskfleet run-list --json --ns URL`` are the
same command. Click reads an option only on the command it is declared on, so the root
declares the three (``cli.main.root``) and ``GlobalOptionsGroup`` gives every command and
group below it a copy of each: typed after the subcommand, the copy records the value on
the invocation's ``Context`` as the root's option does. A command with an option of its
own under the same name (``--json`` on most, ``taskserver serve --ns``) keeps it, and
takes what was typed elsewhere as its default, through Click's ``default_map``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import typer
from typer.core import TyperGroup

from taskfleet.cli.client import Context

# The options' flags, each with the Context attribute that keeps what was typed.
GIVEN = {"--ns": "given_ns", "--credential": "given_credential", "--json": "as_json"}
PANEL = "Global options (before or after the command)"


def record(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
    """The options' callback, wherever they were typed: keep the value on the Context."""
    if value is not None and value is not False:
        attribute = _given_attribute(param)
        if attribute is not None:
            setattr(ctx.find_root().ensure_object(Context), attribute, value)
    return value


def begin(ctx: typer.Context) -> Context:
    """The root's part, before any subcommand is parsed: the Context every command reads,
    and the defaults that hand what was typed before a command to its own options."""
    context = ctx.ensure_object(Context)
    ctx.default_map = _GivenElsewhere(ctx.command, context)
    return context


class GlobalOptionsGroup(TyperGroup):
    """The root group: every command below it accepts the root's global options too."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        shared = [p for p in self.params if _given_attribute(p) is not None]
        for command in _below(self):
            if _passes_arguments_on(command):
                continue  # ``agent run`` hands its argv to the agent, --ns included
            own = {opt for p in command.params for opt in getattr(p, "opts", ())}
            for param in shared:
                if not own.intersection(getattr(param, "opts", ())):
                    command.params.append(_copy_for(param))


def _copy_for(param: Any) -> Any:
    # The command's function does not take it: the callback records it instead.
    duplicate = copy.copy(param)
    duplicate.expose_value = False
    return duplicate


def _below(group: TyperGroup) -> Iterator[Any]:
    for command in group.commands.values():
        yield command
        if isinstance(command, TyperGroup):
            yield from _below(command)


def _passes_arguments_on(command: Any) -> bool:
    return bool(getattr(command, "context_settings", {}).get("ignore_unknown_options"))


def _given_attribute(param: Any) -> str | None:
    for opt in getattr(param, "opts", ()):
        if opt in GIVEN:
            return GIVEN[opt]
    return None


class _GivenElsewhere(dict[str, Any]):
    """A ``default_map`` for ``command`` and, by Click's lookup, every command below it:
    a global option's default is what was typed elsewhere on the line. (The root's own
    ``--ns`` never meets the ``ns`` command here: the root is parsed before this is set.)"""

    def __init__(self, command: Any, context: Context) -> None:
        super().__init__()
        self.command = command
        self.context = context

    def get(self, key: str, default: Any = None) -> Any:
        subcommands = getattr(self.command, "commands", {})
        if key in subcommands:
            return _GivenElsewhere(subcommands[key], self.context)
        for param in self.command.params:
            attribute = _given_attribute(param)
            if param.name == key and attribute is not None:
                # Asked when this command is parsed, so after everything before it on the
                # line; None (typed nowhere) leaves the option its own default, or missing
                # when it is required.
                return getattr(self.context, attribute) or None
        return default
