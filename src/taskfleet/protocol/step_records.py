"""A client job's step records: what each step of one computer's instance did (issue 9).

The agent walks a client job's steps (``agent.client_jobs``) and reports, with the
instance's final status, one record per step it ran, in order::

    {"path": "2.1", "name": "install", "state": "Failed", "return_code": 3, "output": "..."}

``path`` is the step's number, a nested job's steps under their job's ("2.1": step 1 of
the job that is step 2). A goto may run a step again: its record appears again.

The records travel as ``StatusEvent.steps``, a field typed loosely on purpose: the NS
checks them on their own (``checked``), so a bad record is refused alone and never costs
the instance its final status, as a field check of the whole event would. An agent
older than the field sends none; the instance then shows its text output only.

Bounds, on the agent and again on the NS: at most ``MAX_STEP_RECORDS`` records (the
agent keeps the last ones: the steps that decided how the job ended), each output cut
to ``STEP_OUTPUT_LIMIT`` characters and all of them to ``STEPS_OUTPUT_BUDGET``, with the
truncation marker. Output is escaped like script output (``fields.printable``); a name,
path or state that cannot be stored is refused (R12). Standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from taskfleet.protocol.fields import (
    INT32_MAX,
    INT32_MIN,
    capped_output,
    printable,
    text_problem,
)

MAX_STEP_RECORDS = 100
MAX_STEP_NAME = 255
MAX_STEP_PATH = 64
STEP_OUTPUT_LIMIT = 16 * 1024  # characters per step's output
STEPS_OUTPUT_BUDGET = 256 * 1024  # characters of all steps' outputs together
_PATH = re.compile(r"^[1-9][0-9]*(\.[1-9][0-9]*)*$")
_STATES = frozenset(
    {"Pending", "Received", "Running", "Succeeded", "Failed", "TimedOut", "Canceled", "Expired"}
)


@dataclass
class Checked:
    """The records that may be stored, in order, and why the others were refused."""

    records: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def record(
    path: str, name: str, state: str, return_code: int | None, output: str
) -> dict[str, Any]:
    return {
        "path": path,
        "name": name[:MAX_STEP_NAME],
        "state": state,
        "return_code": return_code,
        "output": output,
    }


def bounded(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last ``MAX_STEP_RECORDS`` records, their outputs cut to the limits."""
    kept = records[-MAX_STEP_RECORDS:]
    budget = STEPS_OUTPUT_BUDGET
    out: list[dict[str, Any]] = []
    for item in kept:
        output = item.get("output")
        if isinstance(output, str):
            output = capped_output(output, max(0, min(STEP_OUTPUT_LIMIT, budget)))
            budget -= len(output)
            item = {**item, "output": output}
        out.append(item)
    return out


def problem(item: Any) -> str | None:
    """Why one record cannot be stored, or None when it can (its output aside)."""
    if not isinstance(item, dict):
        return "not an object"
    path, name, state = item.get("path"), item.get("name"), item.get("state")
    if not isinstance(path, str) or len(path) > MAX_STEP_PATH or not _PATH.match(path):
        return "path: expected step numbers such as '2' or '2.1'"
    if not isinstance(name, str) or len(name) > MAX_STEP_NAME:
        return f"name: expected text of at most {MAX_STEP_NAME} characters"
    if (why := text_problem(name)) is not None:
        return f"name: {why}"
    if state not in _STATES:
        return f"state: expected one of {', '.join(sorted(_STATES))}"
    code = item.get("return_code")
    if code is not None and (type(code) is not int or not INT32_MIN <= code <= INT32_MAX):
        return "return_code: expected a 32-bit integer or null"
    if not isinstance(item.get("output", ""), str | None):
        return "output: expected text"
    return None


def checked(raw: Any) -> Checked:
    """``StatusEvent.steps`` as a receiver may store it: each record judged on its own."""
    done = Checked()
    if raw is None:
        return done
    if not isinstance(raw, list):
        done.refused.append("steps: expected a list of step records")
        return done
    if len(raw) > MAX_STEP_RECORDS:
        done.refused.append(
            f"{len(raw) - MAX_STEP_RECORDS} step records past the first {MAX_STEP_RECORDS}"
        )
    for index, item in enumerate(raw[:MAX_STEP_RECORDS]):
        why = problem(item)
        if why is not None:
            done.refused.append(f"step record {index + 1}: {why}")
            continue
        output = printable(item.get("output") or "")
        done.records.append(
            record(item["path"], item["name"], item["state"], item.get("return_code"), output)
        )
    done.records = bounded(done.records)
    return done


def output_size(raw: Any) -> int:
    """Characters of output ``StatusEvent.steps`` holds (what makes it large), for the
    senders' request-size estimates."""
    if not isinstance(raw, list):
        return 0
    outputs = (r.get("output") for r in raw if isinstance(r, dict))
    return sum(len(o) for o in outputs if isinstance(o, str))
