"""A run-script task on the agent: placeholders, options, success codes, masking."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from taskfleet.agent import scripts
from taskfleet.agent.outcome import Outcome
from taskfleet.protocol.messages import Facts, InstanceState, WorkItem
from taskfleet.protocol.templates import SECRET_MASK

FACTS = Facts(
    name="web-01", hardware_id="hw", addresses=["10.1.2.3/24"], facts={"machine": "x86_64"}
)


def item(script: str, **params: Any) -> WorkItem:
    return WorkItem(
        instance_id=1,
        run_id=7,
        task_type="run-script",
        params={"script": script, "interpreter": "sh", **params},
        timeout_s=30,
        param_values={"who": "world", "pw": "hunter2"},
        secret_params=["pw"],
    )


async def run(work: WorkItem) -> Outcome:
    return await scripts.run(work, FACTS, env={}, output_limit=65536)


async def test_placeholders_are_filled_in_and_secrets_masked() -> None:
    result = await run(
        item(
            "echo {{computer.name}} {{computer.ip}} {{run.id}} {{param.who}} {{fact.machine}}\n"
            "echo pw={{param.pw}} env=$PW",
            env={"PW": "{{param.pw}}"},
        )
    )
    assert result.state == InstanceState.SUCCEEDED
    assert result.output == f"web-01 10.1.2.3 7 world x86_64\npw={SECRET_MASK} env={SECRET_MASK}\n"
    assert "hunter2" not in result.output


async def test_success_codes_decide_the_state() -> None:
    assert (await run(item("exit 3", success_codes=[0, 3]))).state == InstanceState.SUCCEEDED
    failed = await run(item("exit 3"))
    assert (failed.state, failed.return_code) == (InstanceState.FAILED, 3)


async def test_working_directory_and_environment(tmp_path: Path) -> None:
    result = await run(
        item("pwd; echo $GREETING", working_dir=str(tmp_path), env={"GREETING": "hi {{run.id}}"})
    )
    assert result.output == f"{tmp_path}\nhi 7\n"


async def test_a_missing_working_directory_or_interpreter_fails_at_once() -> None:
    result = await run(item("true", working_dir="/no/such/dir"))
    assert result.state == InstanceState.FAILED
    assert "working directory '/no/such/dir' does not exist" in result.output
    result = await run(item("true", interpreter="powershell"))
    assert result.state == InstanceState.FAILED
    assert "interpreter 'powershell' is not installed on this computer" in result.output


@pytest.mark.skipif(os.geteuid() != 0, reason="run-as needs an agent running as root")
async def test_run_as_runs_the_script_as_that_user() -> None:
    result = await run(item("id -un; echo $HOME", run_as="nobody"))
    assert result.state == InstanceState.SUCCEEDED, result.output
    assert result.output.splitlines()[0] == "nobody"


async def test_run_as_without_root_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = await run(item("true", run_as="nobody"))
    assert result.state == InstanceState.FAILED
    assert "does not run as root" in result.output


async def test_output_cut_inside_a_secret_does_not_leak_its_beginning() -> None:
    result = await scripts.run(item("echo pw={{param.pw}}"), FACTS, env={}, output_limit=7)
    assert result.output.startswith(f"pw={SECRET_MASK}\n[... output truncated")
    assert "hun" not in result.output
