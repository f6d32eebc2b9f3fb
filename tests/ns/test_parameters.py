"""Declared parameters: checked once when the task is saved, values when a run is made."""

from __future__ import annotations

from typing import Any

import pytest

from taskfleet.errors import InvalidInput
from taskfleet.ns import parameters, script_tasks
from taskfleet.ns.secrets import SecretBox
from taskfleet.protocol.templates import SECRET_MASK

BOX = SecretBox.ephemeral()


def declare(*items: dict[str, Any]) -> list[parameters.Declared]:
    return parameters.check_declarations(list(items), BOX)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ([{"name": "1bad"}], "parameters[0].name"),
        ([{"name": "a-b"}], "parameters[0].name"),
        ([{"name": "x"}, {"name": "x"}], "parameters[1].name"),
        ([{"name": "n", "type": "integer", "default": "ten"}], "parameters[0].default"),
        ([{"name": "b", "type": "boolean", "default": "maybe"}], "parameters[0].default"),
        (
            [{"name": "c", "type": "choice", "choices": ["a"], "default": "b"}],
            "parameters[0].default",
        ),
        ([{"name": "c", "type": "choice"}], "parameters[0].choices"),
        ([{"name": "t", "type": "float"}], "parameters[0].type"),
        ([{"name": "s", "required": "yes"}], "parameters[0].required"),
        ([{"name": "s", "default": "a\x00b"}], "parameters[0].default"),
    ],
)
def test_bad_declarations_are_refused_naming_the_field(raw: list[Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parameters.check_declarations(raw, BOX)
    assert caught.value.field == field


def test_defaults_are_normalised_and_a_secret_default_sealed() -> None:
    found = declare(
        {"name": "n", "type": "integer", "default": " 42"},
        {"name": "b", "type": "boolean", "default": "Yes"},
        {"name": "pw", "secret": True, "default": "hunter2"},
    )
    assert [d.default for d in found] == ["42", "true", None]
    assert found[2].sealed_default and "hunter2" not in found[2].sealed_default
    assert found[2].shown()["default"] == SECRET_MASK
    # An edit that gives the mask back keeps the sealed default.
    again = parameters.check_declarations([found[2].shown()], BOX, found)
    assert again[0].sealed_default == found[2].sealed_default


def test_run_values_are_checked_and_secrets_sealed() -> None:
    declared = declare(
        {"name": "n", "type": "integer", "required": True},
        {"name": "site", "type": "choice", "choices": ["north", "south"], "default": "north"},
        {"name": "pw", "secret": True},
        {"name": "note"},
    )
    plain, sealed = parameters.check_values(declared, {"n": "7", "pw": "s3cret"}, BOX)
    assert plain == {"n": "7", "site": "north"}
    assert BOX.open(sealed["pw"]) == "s3cret"
    assert parameters.shown_values(plain, sealed)["pw"] == SECRET_MASK


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({}, "params.n"),  # required, no default
        ({"n": "x"}, "params.n"),  # wrong type
        ({"n": "1", "nope": "1"}, "params.nope"),  # not declared
        ({"n": "1", "site": "east"}, "params.site"),  # not a choice
        ({"n": "1", "ask_me": None}, "params.ask_me"),  # asked at run time, not given
    ],
)
def test_bad_run_values_are_refused_naming_the_parameter(given: dict[str, Any], field: str) -> None:
    declared = declare(
        {"name": "n", "type": "integer", "required": True},
        {"name": "site", "type": "choice", "choices": ["north", "south"]},
        {"name": "ask_me", "ask": True, "default": "x"},
    )
    with pytest.raises(InvalidInput) as caught:
        parameters.check_values(declared, given, BOX)
    assert caught.value.field == field


def test_a_script_task_refuses_unknown_placeholders_and_bad_options() -> None:
    base = {"script": "echo {{param.who}}", "parameters": [{"name": "who"}]}
    assert script_tasks.check(base, BOX)["success_codes"] == [0]
    cases = [
        ({**base, "script": "echo {{param.whom}}"}, "script"),
        ({**base, "script": "echo {{computer.nme}}"}, "script"),
        ({**base, "working_dir": "/tmp/{{run.number}}"}, "working_dir"),
        ({**base, "env": {"A": "{{param.x}}"}}, "env.A"),
        ({**base, "env": {"1A": "x"}}, "env"),
        ({**base, "success_codes": []}, "success_codes"),
        ({**base, "success_codes": [2**40]}, "success_codes"),
        ({**base, "run_as": "bad user"}, "run_as"),
        ({**base, "interpreter": "zsh"}, "interpreter"),
    ]
    for params, field in cases:
        with pytest.raises(InvalidInput) as caught:
            script_tasks.check(params, BOX)
        assert caught.value.field == field, params


def test_the_agent_is_sent_values_not_declarations() -> None:
    params = script_tasks.check(
        {**{"script": "x"}, "parameters": [{"name": "pw", "secret": True, "default": "p"}]}, BOX
    )
    assert "parameters" not in script_tasks.for_agent(params)
    plain, sealed = parameters.check_values(parameters.loaded(params["parameters"]), {}, BOX)
    delivered = parameters.delivered(plain, sealed, BOX)
    assert delivered == {"param_values": {"pw": "p"}, "secret_params": ["pw"]}


def test_a_key_file_is_made_once_0600_and_reused(tmp_path: Any) -> None:
    first = SecretBox.load_or_create(tmp_path / "ca")
    token = first.seal("value")
    assert (tmp_path / "ca" / "secrets.key").stat().st_mode & 0o777 == 0o600
    assert SecretBox.load_or_create(tmp_path / "ca").open(token) == "value"
    with pytest.raises(Exception, match="same <data-dir>/ca/secrets.key"):
        SecretBox.ephemeral().open(token)


def test_a_schedule_keeps_given_values_checked_and_its_secrets_sealed() -> None:
    params = script_tasks.check(
        {
            "script": "x",
            "parameters": [{"name": "who", "required": True}, {"name": "pw", "secret": True}],
        },
        BOX,
    )
    with pytest.raises(InvalidInput) as caught:
        parameters.for_schedule("run-script", params, {"pw": "p"}, BOX)
    assert caught.value.field == "params.who"
    kept = parameters.for_schedule("run-script", params, {"who": "a", "pw": "pass-phrase"}, BOX)
    assert kept["who"] == "a" and "pass-phrase" not in str(kept["pw"])
    assert parameters.shown_given(kept) == {"who": "a", "pw": SECRET_MASK}
    # Each run the schedule starts takes the sealed value as it is
    plain, sealed = parameters.for_run("run-script", params, kept, BOX)
    assert plain == {"who": "a"} and BOX.open(sealed["pw"]) == "pass-phrase"
