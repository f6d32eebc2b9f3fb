"""Declared parameters of a run-script task, and the values a run gives them.

A declaration, as stored in the task's ``params["parameters"]`` (and in API bodies)::

    {"name": "site", "type": "choice", "choices": ["north", "south"], "default": "north",
     "required": true, "secret": false, "ask": false}

- ``type``: ``string`` (any text), ``integer`` (decimal, 64-bit), ``boolean`` (true/false;
  yes/no/1/0 accepted and stored as true/false) or ``choice`` (one of ``choices``).
- ``required``: a run must end up with a value, its own or the default.
- ``secret``: the value (and default) is encrypted at rest (``ns.secrets``), shown as
  ``templates.SECRET_MASK`` everywhere, and masked in the script's output by the agent.
- ``ask``: asked at run time: the run must give a value itself (the console's run form
  shows the input, prefilled with the default; the CLI prompts when it can).

Everything is checked once, when the task is saved (400 naming ``parameters[i].FIELD``)
and when a run is created (400 naming ``params.NAME``); nothing is stored on a refusal.
Values travel as text: that is what a placeholder becomes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskfleet.errors import InvalidInput, TaskfleetError
from taskfleet.ns.secrets import SecretBox
from taskfleet.protocol.fields import text_problem
from taskfleet.protocol.templates import SECRET_MASK

TYPES = ("string", "integer", "boolean", "choice")
MAX_PARAMETERS = 50
MAX_CHOICES = 100
MAX_VALUE_CHARS = 4096
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
SEALED = "sealed"  # a schedule's secret value: {"sealed": token} (for_schedule)
_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


@dataclass
class Declared:
    name: str
    type: str = "string"
    default: str | None = None  # plain text; a secret's is sealed in ``sealed_default``
    required: bool = False
    secret: bool = False
    ask: bool = False
    choices: tuple[str, ...] = ()
    sealed_default: str | None = None

    def stored(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "sealed_default": self.sealed_default,
            "required": self.required,
            "secret": self.secret,
            "ask": self.ask,
            "choices": list(self.choices),
        }

    def shown(self) -> dict[str, Any]:
        """As the API, CLI and console show it: a secret default masked."""
        view = self.stored()
        del view["sealed_default"]
        if self.sealed_default is not None:
            view["default"] = SECRET_MASK
        return view

    @property
    def has_default(self) -> bool:
        return self.default is not None or self.sealed_default is not None


def loaded(stored: list[dict[str, Any]] | None) -> list[Declared]:
    """Declarations as saved with a task (already checked)."""
    return [Declared(**{**d, "choices": tuple(d.get("choices") or ())}) for d in (stored or [])]


def normalise(declared: Declared, value: Any, field: str) -> str:
    """``value`` as the text the script gets, or InvalidInput naming ``field``."""
    kind = declared.type
    if isinstance(value, bool) and kind == "boolean":
        return "true" if value else "false"
    if isinstance(value, int) and not isinstance(value, bool) and kind == "integer":
        value = str(value)
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be text, got {type(value).__name__}", field=field)
    problem = text_problem(value)
    if problem or len(value) > MAX_VALUE_CHARS:
        raise InvalidInput(
            f"{field} {problem or f'is longer than {MAX_VALUE_CHARS} characters'}", field=field
        )
    if kind == "integer":
        try:
            number = int(value.strip())
        except ValueError:
            raise InvalidInput(
                f"{field} must be a whole number, not {value!r}", field=field
            ) from None
        if not -(2**63) <= number < 2**63:
            raise InvalidInput(f"{field} does not fit 64 bits", field=field)
        return str(number)
    if kind == "boolean":
        word = value.strip().lower()
        if word in _TRUE or word in _FALSE:
            return "true" if word in _TRUE else "false"
        raise InvalidInput(f"{field} must be true or false, not {value!r}", field=field)
    if kind == "choice" and value not in declared.choices:
        raise InvalidInput(
            f"{field} must be one of {', '.join(declared.choices)}; not {value!r}", field=field
        )
    return value


def _flag(raw: Mapping[str, Any], key: str, at: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"{at}.{key} must be true or false", field=f"{at}.{key}")
    return value


def check_declarations(
    raw: Any, box: SecretBox | None, previous: list[Declared] | None = None
) -> list[Declared]:
    """Declarations from an API body or form, checked; a secret default sealed.

    A secret default given back as SECRET_MASK (an edit form shows it so) keeps the
    previous declaration's sealed default.
    """
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidInput("parameters must be a list of declarations", field="parameters")
    if len(raw) > MAX_PARAMETERS:
        raise InvalidInput(f"at most {MAX_PARAMETERS} parameters", field="parameters")
    before = {d.name: d for d in previous or []}
    out: list[Declared] = []
    for i, item in enumerate(raw):
        at = f"parameters[{i}]"
        if not isinstance(item, Mapping):
            raise InvalidInput(f"{at} must be an object", field=at)
        unknown = set(item) - {*Declared.__dataclass_fields__} - {"sealed_default"}
        if unknown:
            raise InvalidInput(
                f"{at} has unknown keys {', '.join(sorted(map(str, unknown)))}", field=at
            )
        name = item.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidInput(
                f"{at}.name must be a letter or _ then letters, digits or _ "
                f"(at most 64), not {name!r}",
                field=f"{at}.name",
            )
        if any(d.name == name for d in out):
            raise InvalidInput(
                f"{at}.name: parameter {name!r} is declared twice", field=f"{at}.name"
            )
        kind = item.get("type", "string")
        if kind not in TYPES:
            raise InvalidInput(
                f"{at}.type must be one of {', '.join(TYPES)}, not {kind!r}", field=f"{at}.type"
            )
        choices = item.get("choices") or []
        if kind == "choice":
            if not isinstance(choices, list) or not 1 <= len(choices) <= MAX_CHOICES:
                raise InvalidInput(
                    f"{at}.choices: a choice parameter needs 1 to {MAX_CHOICES} values",
                    field=f"{at}.choices",
                )
            for choice in choices:
                if not isinstance(choice, str) or text_problem(choice) or not choice:
                    raise InvalidInput(
                        f"{at}.choices must be non-empty text values", field=f"{at}.choices"
                    )
        elif choices:
            raise InvalidInput(f"{at}.choices are only for type choice", field=f"{at}.choices")
        declared = Declared(
            name=name,
            type=kind,
            required=_flag(item, "required", at),
            secret=_flag(item, "secret", at),
            ask=_flag(item, "ask", at),
            choices=tuple(dict.fromkeys(choices)),
        )
        default = item.get("default")
        if default is not None and default != "":  # "" (an empty form field): no default
            if declared.secret and default == SECRET_MASK and name in before:
                declared.sealed_default = before[name].sealed_default
            else:
                value = normalise(declared, default, f"{at}.default")
                if declared.secret:
                    if box is None:  # a caller without the NS's state: never seal with no key
                        raise TaskfleetError("secret parameters need the NS's secrets key")
                    declared.sealed_default = box.seal(value)
                else:
                    declared.default = value
        out.append(declared)
    return out


def check_values(
    declared: list[Declared], given: Mapping[str, Any] | None, box: SecretBox
) -> tuple[dict[str, str], dict[str, str]]:
    """A run's values: ``(plain, sealed)``, by name, defaults filled in; secrets sealed.

    Refused (InvalidInput naming ``params.NAME``): an undeclared name, a value of the
    wrong type, a required one without a value, an "ask at run time" one not given.
    """
    given = dict(given or {})
    by_name = {d.name: d for d in declared}
    for name in given:
        if name not in by_name:
            known = ", ".join(by_name) or "none"
            raise InvalidInput(
                f"params.{name}: the task declares no parameter {name!r} (it declares: {known})",
                field=f"params.{name}",
            )
    plain: dict[str, str] = {}
    sealed: dict[str, str] = {}
    for d in declared:
        field = f"params.{d.name}"
        if d.secret and isinstance(given.get(d.name), Mapping):  # sealed by for_schedule
            sealed[d.name] = str(given[d.name].get(SEALED, ""))
            continue
        if d.name in given and given[d.name] is not None:
            value = normalise(d, given[d.name], field)
            if d.secret:
                sealed[d.name] = box.seal(value)
            else:
                plain[d.name] = value
            continue
        if d.ask:
            raise InvalidInput(
                f"{field} is asked at run time: give it a value (--param {d.name}=VALUE)",
                field=field,
            )
        if d.sealed_default is not None:
            sealed[d.name] = d.sealed_default
        elif d.default is not None:
            plain[d.name] = d.default
        elif d.required:
            raise InvalidInput(
                f"{field} is required and has no default: give it a value (--param {d.name}=VALUE)",
                field=field,
            )
    return plain, sealed


def shown_values(plain: Mapping[str, str], sealed: Mapping[str, str]) -> dict[str, str]:
    """A run's values as they may be shown: secrets masked."""
    return {**plain, **dict.fromkeys(sealed, SECRET_MASK)}


def for_run(
    task_type: str, task_params: Mapping[str, Any], given: Mapping[str, Any] | None, box: SecretBox
) -> tuple[dict[str, str], dict[str, str]]:
    """The values a new run of a task stores: ``check_values`` against its declarations
    (a task of another type, or without declarations, takes none)."""
    declared = loaded(task_params.get("parameters")) if task_type == "run-script" else []
    return check_values(declared, given, box)


def delivered(
    plain: Mapping[str, str] | None, sealed: Mapping[str, str] | None, box: SecretBox | None
) -> dict[str, Any]:
    """``WorkItem``/``RunTask`` fields for a run's values: secrets decrypted, for the
    target agent only (over TLS), and named so the agent masks them in its output."""
    values = dict(plain or {})
    if sealed and box is None:
        raise TaskfleetError("delivering secret parameters needs the NS's secrets key")
    for name, token in (sealed or {}).items():
        assert box is not None
        values[name] = box.open(token)
    return {"param_values": values, "secret_params": sorted(sealed or {})}


def for_schedule(
    task_type: str, task_params: Mapping[str, Any], given: Mapping[str, Any], box: SecretBox | None
) -> dict[str, Any]:
    """The values a schedule keeps for the runs it will start: checked now, as a run's
    would be (400 naming ``params.NAME``), and only those given (defaults are taken
    when each run starts); a secret one sealed as ``{"sealed": token}``, which
    ``check_values`` takes as it is."""
    declared = loaded(task_params.get("parameters")) if task_type == "run-script" else []
    return for_schedule_declared(declared, given, box)


def for_schedule_declared(
    declared: list[Declared], given: Mapping[str, Any], box: SecretBox | None
) -> dict[str, Any]:
    """``for_schedule`` against declarations given (a job's: ns.job_plans)."""
    check_values(declared, given, box or SecretBox.ephemeral())
    secret = {d.name for d in declared if d.secret}
    if secret & set(given) and box is None:
        raise TaskfleetError("secret parameters need the NS's secrets key")
    out: dict[str, Any] = {}
    for d in declared:
        if d.name in given and given[d.name] is not None:
            value = normalise(d, given[d.name], f"params.{d.name}")
            out[d.name] = {SEALED: box.seal(value)} if d.secret and box else value
    return out


def shown_given(stored: Mapping[str, Any]) -> dict[str, str]:
    """A schedule's values as they may be shown: sealed ones masked."""
    return {k: SECRET_MASK if isinstance(v, Mapping) else str(v) for k, v in stored.items()}
