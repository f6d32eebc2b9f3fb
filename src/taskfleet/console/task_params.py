"""The task form's run-script options and declared parameters, to and from form fields.

The form shows one row per declared parameter plus ``BLANK_ROWS`` empty ones (a row
whose name is empty is ignored). Row ``i`` is the fields ``p{i}_name``, ``p{i}_type``,
``p{i}_choices`` (values separated by ``|``), ``p{i}_default`` and the check boxes
``p{i}_required``, ``p{i}_secret``, ``p{i}_ask``. A secret default is shown as the mask;
saved unchanged, it keeps the stored one (``ns.parameters``). Environment variables
are ``NAME=VALUE`` lines; success codes are comma-separated.

Mistakes come back from ``ns.script_tasks`` naming ``parameters[i].FIELD``, ``env``,
``success_codes``...: the template shows each next to its input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskfleet.errors import InvalidInput
from taskfleet.ns import parameters

BLANK_ROWS = 2
FLAGS = ("required", "secret", "ask")


def blank_row() -> dict[str, Any]:
    return {
        "name": "",
        "type": "string",
        "choices": "",
        "default": "",
        **dict.fromkeys(FLAGS, False),
    }


def numbered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row with ``index``: its place among the declared (named) parameters, which
    is what an error's field names (``parameters[index].FIELD``); None for a blank row."""
    k = 0
    for row in rows:
        row["index"] = k if row["name"] else None
        k += 1 if row["name"] else 0
    return rows


def form_from_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The form's values for a stored task's params."""
    rows = []
    for declared in parameters.loaded(params.get("parameters")):
        shown = declared.shown()
        rows.append(
            {
                **shown,
                "choices": "|".join(shown["choices"]),
                "default": "" if shown["default"] is None else shown["default"],
            }
        )
    return {
        "working_dir": params.get("working_dir", ""),
        "env": "\n".join(f"{k}={v}" for k, v in (params.get("env") or {}).items()),
        "success_codes": ", ".join(str(c) for c in params.get("success_codes", [0])),
        "run_as": params.get("run_as", ""),
        "rows": numbered(rows + [blank_row() for _ in range(BLANK_ROWS)]),
    }


def form_from_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The form's values as submitted (shown again, with the mistake, when refused)."""
    rows = []
    i = 0
    while f"p{i}_name" in fields:
        row: dict[str, Any] = {
            "name": str(fields.get(f"p{i}_name", "")).strip(),
            "type": str(fields.get(f"p{i}_type", "string")),
            "choices": str(fields.get(f"p{i}_choices", "")),
            "default": str(fields.get(f"p{i}_default", "")),
        }
        row |= {flag: bool(fields.get(f"p{i}_{flag}")) for flag in FLAGS}
        rows.append(row)
        i += 1
    if not any(not r["name"] for r in rows):
        rows.append(blank_row())
    return {
        "working_dir": str(fields.get("working_dir", "")),
        "env": str(fields.get("env", "")),
        "success_codes": str(fields.get("success_codes", "0")),
        "run_as": str(fields.get("run_as", "")),
        "rows": numbered(rows),
    }


def params_from_form(form: Mapping[str, Any]) -> dict[str, Any]:
    """A task's run-script options for ``ns.tasks`` (which checks them), from ``form``."""
    env: dict[str, str] = {}
    for number, line in enumerate(str(form["env"]).splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise InvalidInput(f"env line {number}: write NAME=VALUE", field="env")
        env[name.strip()] = value
    try:
        codes = [int(c) for c in str(form["success_codes"]).split(",") if c.strip()]
    except ValueError:
        raise InvalidInput(
            "success codes are whole numbers separated by commas, e.g. 0, 3010",
            field="success_codes",
        ) from None
    declared = []
    for row in form["rows"]:
        if not row["name"]:
            continue
        item: dict[str, Any] = {"name": row["name"], "type": row["type"]}
        item |= {flag: row[flag] for flag in FLAGS}
        if row["type"] == "choice":
            item["choices"] = [c.strip() for c in row["choices"].split("|") if c.strip()]
        if row["default"] != "":
            item["default"] = row["default"]
        declared.append(item)
    out: dict[str, Any] = {"success_codes": codes or [0], "parameters": declared}
    if form["working_dir"]:
        out["working_dir"] = form["working_dir"]
    if env:
        out["env"] = env
    if form["run_as"]:
        out["run_as"] = form["run_as"]
    return out


def run_values(fields: Mapping[str, Any]) -> dict[str, str]:
    """The run form's parameter values: fields ``param.NAME``; an empty one is not given
    (its default applies, or the NS says it is required)."""
    return {
        key.removeprefix("param."): str(value)
        for key, value in fields.items()
        if key.startswith("param.") and str(value) != ""
    }
