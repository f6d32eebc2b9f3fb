"""Run-script options on the command line: declared parameters, their values, the warning.

A parameter is declared with ``--parameter SPEC`` (repeatable)::

    NAME[:TYPE][=DEFAULT][,required][,secret][,ask]
    TYPE is string (the default), integer, boolean, or choice(A|B|C)

    --parameter 'greeting=hello'                     a string with a default
    --parameter 'count:integer=3,required'
    --parameter 'site:choice(north|south)=north'
    --parameter 'password,secret,ask'                asked at every run, never shown

A default holding a comma, or many declarations, go in ``--parameters-file FILE``:
a JSON list of declarations as the API takes them (docs/work-model.md, "Parameters").
A run gives values with ``--param NAME=VALUE`` (repeatable); an "ask at run time"
parameter not given is prompted for when the CLI runs in a terminal (hidden for a
secret one).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from taskfleet.cli.client import Api, fail

ParameterOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--parameter",
        help="declare a parameter: NAME[:TYPE][=DEFAULT][,required][,secret][,ask]; "
        "TYPE string, integer, boolean or choice(A|B); repeatable",
    ),
]
ParametersFileOpt = Annotated[
    Path | None, typer.Option(help="declared parameters as a JSON list (the API's shape)")
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", help="a parameter's value for this run: NAME=VALUE; repeatable"),
]
WorkdirOpt = Annotated[str | None, typer.Option("--workdir", help="the script's working directory")]
EnvOpt = Annotated[
    list[str] | None,
    typer.Option("--env", help="an environment variable for the script: NAME=VALUE; repeatable"),
]
SuccessCodesOpt = Annotated[
    str | None,
    typer.Option(help="return codes that count as success, comma-separated (default 0)"),
]
RunAsOpt = Annotated[
    str | None, typer.Option(help="run the script as this local user (agents running as root)")
]

_SPEC = re.compile(
    r"^(?P<name>[^:=,()]+)"
    r"(?::(?P<type>string|integer|boolean|choice)(?:\((?P<choices>[^)]*)\))?)?"
    r"(?:=(?P<default>[^,]*))?"
    r"(?P<flags>(?:,(?:required|secret|ask))*)$"
)


def declaration(spec: str) -> dict[str, Any]:
    """One ``--parameter`` SPEC as the API's declaration."""
    found = _SPEC.match(spec.strip())
    if found is None:
        fail(
            f"--parameter {spec!r}: write NAME[:TYPE][=DEFAULT][,required][,secret][,ask], "
            "e.g. 'count:integer=3,required' or 'site:choice(north|south)=north'"
        )
    kind = found.group("type") or "string"
    if (found.group("choices") is not None) != (kind == "choice"):
        fail(f"--parameter {spec!r}: choice takes its values in brackets, choice(A|B)")
    flags = set(filter(None, found.group("flags").split(",")))
    out: dict[str, Any] = {
        "name": found.group("name").strip(),
        "type": kind,
        "required": "required" in flags,
        "secret": "secret" in flags,
        "ask": "ask" in flags,
    }
    if found.group("default") is not None:
        out["default"] = found.group("default")
    if kind == "choice":
        out["choices"] = [c for c in (found.group("choices") or "").split("|") if c]
    return out


def declarations(specs: list[str] | None, file: Path | None) -> list[dict[str, Any]] | None:
    """Declarations from ``--parameter`` and ``--parameters-file``; None when neither."""
    if not specs and file is None:
        return None
    found = [declaration(s) for s in specs or []]
    if file is not None:
        try:
            loaded = json.loads(file.read_text())
        except OSError as exc:
            fail(f"cannot read {file}: {exc.strerror}")
        except ValueError as exc:
            fail(f"{file} is not JSON: {exc}")
        if not isinstance(loaded, list):
            fail(f"{file} must hold a JSON list of parameter declarations")
        found += loaded
    return found


def pairs(values: list[str] | None, option: str) -> dict[str, str]:
    """``NAME=VALUE`` options as a map (the value may hold '=')."""
    out: dict[str, str] = {}
    for item in values or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            fail(f"{option} {item!r}: write NAME=VALUE")
        out[name] = value
    return out


def codes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        fail(f"--success-codes {text!r}: give whole numbers separated by commas, e.g. 0,3010")


def script_options(
    workdir: str | None, env: list[str] | None, success_codes: str | None, run_as: str | None
) -> dict[str, Any]:
    """The task body's option fields that were given."""
    body: dict[str, Any] = {}
    if workdir is not None:
        body["working_dir"] = workdir
    if env:
        body["env"] = pairs(env, "--env")
    if success_codes is not None:
        body["success_codes"] = codes(success_codes)
    if run_as is not None:
        body["run_as"] = run_as
    return body


def prepare_run(
    api: Api, task: str, targets: list[str], exclude: list[str] | None, given: list[str] | None
) -> dict[str, str]:
    """Before a run starts: warn (on stderr, so --json stays JSON) how many targets lack
    the script's interpreter (``POST /api/runs/preview``, for a task or a job), and
    return the ``--param`` values plus a prompt for each "ask at run time" parameter
    not given (only in a terminal: otherwise the NS refuses the run, naming it)."""
    values = pairs(given, "--param")
    found: dict[str, Any] = api.post(
        "/api/runs/preview", {"task": task, "targets": targets, "exclude": exclude or []}
    )
    if found.get("warning"):
        typer.echo(f"taskfleet: warning: {found['warning']}", err=True)
    if not sys.stdin.isatty():
        return values
    for declared in found.get("parameters", []):
        if declared["ask"] and declared["name"] not in values:
            default = None if declared["secret"] else declared.get("default")
            values[declared["name"]] = typer.prompt(
                f"{declared['name']} ({declared['type']})",
                default=default,
                hide_input=declared["secret"],
            )
    return values


def show_options(params: dict[str, Any]) -> None:
    """A run-script task's options and declared parameters, for ``task show``."""
    from taskfleet.cli.output import console, table

    for key, label in (("working_dir", "working directory"), ("run_as", "run as")):
        if params.get(key):
            console.print(f"{label}: {params[key]}", highlight=False, markup=False)
    if params.get("success_codes", [0]) != [0]:
        console.print(f"success codes: {', '.join(map(str, params['success_codes']))}")
    for name, value in (params.get("env") or {}).items():
        console.print(f"env {name}={value}", highlight=False, markup=False)
    declared = params.get("parameters") or []
    if declared:
        table(
            "Parameters",
            ["name", "type", "default", "required", "secret", "ask at run time"],
            [
                [
                    d["name"],
                    d["type"] + (f" ({'|'.join(d['choices'])})" if d.get("choices") else ""),
                    "" if d.get("default") is None else d["default"],
                    "yes" if d["required"] else "",
                    "yes" if d["secret"] else "",
                    "yes" if d["ask"] else "",
                ]
                for d in declared
            ],
        )
