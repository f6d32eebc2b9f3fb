"""Declaring parameters on the command line, and a task's round trip through the NS."""

from __future__ import annotations

import json

import pytest
import typer

from taskfleet.cli import parameters
from taskfleet.protocol.templates import SECRET_MASK
from tests.cli.test_cli import taskfleet
from tests.fleet import Fleet


@pytest.mark.parametrize(
    ("spec", "declared"),
    [
        ("who", {"name": "who", "type": "string"}),
        ("who=world", {"name": "who", "type": "string", "default": "world"}),
        (
            "n:integer=3,required",
            {"name": "n", "type": "integer", "default": "3", "required": True},
        ),
        (
            "site:choice(north|south)=north",
            {"name": "site", "type": "choice", "choices": ["north", "south"], "default": "north"},
        ),
        ("token,secret,ask", {"name": "token", "type": "string", "secret": True, "ask": True}),
        ("empty=", {"name": "empty", "type": "string", "default": ""}),
    ],
)
def test_a_spec_becomes_the_apis_declaration(spec: str, declared: dict[str, object]) -> None:
    expected = {"required": False, "secret": False, "ask": False, **declared}
    assert parameters.declaration(spec) == expected


@pytest.mark.parametrize("spec", ["who:float", "site:choice", "who,sometimes", "a:string(x)"])
def test_a_bad_spec_is_refused_with_the_syntax(spec: str) -> None:
    with pytest.raises(typer.Exit):
        parameters.declaration(spec)


def test_create_show_and_edit_a_task_with_parameters(fleet: Fleet) -> None:
    # Given a task declared on the command line, with a secret default
    made = taskfleet(
        fleet,
        "task", "create", "greet", "--script", "echo {{param.who}} {{param.pw}}",
        "--parameter", "who=world,required", "--parameter", "pw=hunter2-x,secret",
        "--success-codes", "0,3010", "--env", "A=1", "--workdir", "/tmp",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr

    # When it is shown and edited (a new script; the secret default left as shown)
    shown = taskfleet(fleet, "task", "show", "greet")
    edited = taskfleet(fleet, "task", "edit", "greet", "--script", "echo {{param.who}}!")
    task = json.loads(taskfleet(fleet, "task", "show", "greet", "--json").stdout)

    # Then the secret is masked, everything else as declared, and the edit kept it all
    assert "hunter2-x" not in shown.stdout and SECRET_MASK in shown.stdout
    assert "success codes: 0, 3010" in shown.stdout
    assert edited.returncode == 0, edited.stderr
    assert task["params"]["script"] == "echo {{param.who}}!"
    assert task["params"]["success_codes"] == [0, 3010]
    assert [p["default"] for p in task["params"]["parameters"]] == ["world", SECRET_MASK]

    # And a default of the wrong type is refused, naming the parameter
    bad = taskfleet(fleet, "task", "create", "bad", "--script", "x", "--parameter", "n:integer=x")
    assert bad.returncode != 0
    assert "parameters[0].default" in bad.stderr
