"""What a run-script task holds, checked once when it is saved (never on the computer).

Stored in ``Task.params`` and delivered to the agent (``agent.scripts``) as is, but for
``parameters``, which only the NS needs (``for_agent``):

- ``script``, ``interpreter`` (``protocol.messages.INTERPRETERS``);
- ``working_dir``: where the script runs ("" for the agent's own directory);
- ``env``: environment variables, name -> value;
- ``success_codes``: the return codes that count as success (default ``[0]``);
- ``run_as``: a local account the script runs as (the agent must run as root);
- ``parameters``: declarations (``ns.parameters``).

Placeholders (``protocol.templates``) in the script, working directory and
environment values must be known ones, and ``{{param.NAME}}`` a declared parameter.
"""

from __future__ import annotations

import re
from typing import Any

from taskfleet.errors import InvalidInput
from taskfleet.ns import parameters
from taskfleet.ns.secrets import SecretBox
from taskfleet.protocol import templates
from taskfleet.protocol.fields import INT32_MAX, INT32_MIN, text_problem
from taskfleet.protocol.messages import INTERPRETERS

MAX_SCRIPT_BYTES = 256 * 1024
MAX_ENV = 100
MAX_TEXT = 4096
MAX_CODES = 32
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
ACCOUNT = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,63}$")
OPTIONS = ("script", "interpreter", "working_dir", "env", "success_codes", "run_as", "parameters")


def _text(value: Any, field: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be text", field=field)
    problem = text_problem(value)
    if problem or len(value) > limit:
        raise InvalidInput(
            f"{field} {problem or f'is longer than {limit} characters'}", field=field
        )
    return value


def _template(value: str, field: str, declared: list[str]) -> None:
    try:
        templates.check(value, declared)
    except templates.TemplateError as exc:
        raise InvalidInput(f"{field}: {exc}", field=field) from None


def _env(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > MAX_ENV:
        raise InvalidInput(
            f"env must be a map of at most {MAX_ENV} variables, name -> value", field="env"
        )
    for name in raw:
        if not isinstance(name, str) or not ENV_NAME.match(name):
            raise InvalidInput(
                f"env: {name!r} is not a variable name (a letter or _ then letters, digits or _)",
                field="env",
            )
    return {name: _text(value, f"env.{name}") for name, value in raw.items()}


def _codes(raw: Any) -> list[int]:
    if raw is None:
        return [0]
    ok = isinstance(raw, list) and 1 <= len(raw) <= MAX_CODES
    if not ok or any(
        isinstance(c, bool) or not isinstance(c, int) or not INT32_MIN <= c <= INT32_MAX
        for c in raw
    ):
        raise InvalidInput(
            f"success_codes must be 1 to {MAX_CODES} whole numbers (32-bit), e.g. [0, 3010]",
            field="success_codes",
        )
    return sorted(set(raw))


def check(
    params: dict[str, Any], box: SecretBox | None, previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A run-script task's params, checked and normalised; InvalidInput names the field."""
    unknown = set(params) - set(OPTIONS)
    if unknown:
        raise InvalidInput(f"unknown run-script options: {', '.join(sorted(unknown))}")
    script = params.get("script")
    interpreter = params.get("interpreter") or "sh"
    if not isinstance(script, str) or not script.strip():
        raise InvalidInput("a run-script task needs a non-empty 'script'", field="script")
    if len(script.encode("utf-8", "replace")) > MAX_SCRIPT_BYTES:
        raise InvalidInput(f"the script is larger than {MAX_SCRIPT_BYTES} bytes", field="script")
    _text(script, "script", MAX_SCRIPT_BYTES)
    if interpreter not in INTERPRETERS:
        raise InvalidInput(
            f"interpreter {interpreter!r} is not supported; use one of {', '.join(INTERPRETERS)}",
            field="interpreter",
        )
    before = parameters.loaded((previous or {}).get("parameters"))
    declared = parameters.check_declarations(params.get("parameters"), box, before)
    names = [d.name for d in declared]
    working_dir = _text(params.get("working_dir") or "", "working_dir", 1024)
    env = _env(params.get("env"))
    run_as = _text(params.get("run_as") or "", "run_as", 64)
    if run_as and not ACCOUNT.match(run_as):
        raise InvalidInput(f"run_as: {run_as!r} is not an account name", field="run_as")
    _template(script, "script", names)
    _template(working_dir, "working_dir", names)
    for name, value in env.items():
        _template(value, f"env.{name}", names)
    out: dict[str, Any] = {"script": script, "interpreter": interpreter}
    if working_dir:
        out["working_dir"] = working_dir
    if env:
        out["env"] = env
    out["success_codes"] = _codes(params.get("success_codes"))
    if run_as:
        out["run_as"] = run_as
    if declared:
        out["parameters"] = [d.stored() for d in declared]
    return out


def for_agent(params: dict[str, Any]) -> dict[str, Any]:
    """What the agent is sent of a task's params: not the declarations (and their sealed
    defaults); it gets the run's values instead."""
    return {k: v for k, v in params.items() if k != "parameters"}


def shown(params: dict[str, Any]) -> dict[str, Any]:
    """A task's params as the API, CLI and console show them: secret defaults masked."""
    if "parameters" not in params:
        return dict(params)
    declared = parameters.loaded(params["parameters"])
    return {**params, "parameters": [d.shown() for d in declared]}
