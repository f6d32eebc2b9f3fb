"""A run-script task on this computer: fill in its placeholders, run it, judge the result.

What a run-script ``WorkItem`` carries (``params``, checked by the NS when the task
was saved): ``script``, ``interpreter``, and optionally ``working_dir``, ``env`` (name
-> value), ``success_codes`` (default ``[0]``) and ``run_as``. The run's parameter
values come in ``param_values``; those named in ``secret_params`` are masked
(``templates.SECRET_MASK``) in the output before it is reported, so a script that
prints a secret never sends it back.

Anything that stops the script from starting (its interpreter missing, the working
directory absent, a run-as user this agent cannot use) fails the instance at once,
with output that says so; it never waits for the timeout.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from taskfleet.agent import accounts
from taskfleet.agent.outcome import Outcome, failed
from taskfleet.agent.runner import run_script
from taskfleet.protocol import templates
from taskfleet.protocol.fields import TRUNCATION_MARKER
from taskfleet.protocol.messages import Facts, InstanceState, WorkItem

_CUT = TRUNCATION_MARKER.split("{", 1)[0]  # where the runner's truncation marker starts


def values_for(item: WorkItem, facts: Facts) -> templates.Values:
    ip = facts.addresses[0].split("/")[0] if facts.addresses else ""
    return templates.Values(
        computer_name=facts.name,
        computer_ip=ip,
        run_id=item.run_id,
        params=item.param_values,
        facts=facts.facts,
    )


def success_codes(params: Mapping[str, Any]) -> set[int]:
    codes = params.get("success_codes")
    return {int(c) for c in codes} if isinstance(codes, list) and codes else {0}


async def run(
    item: WorkItem,
    facts: Facts,
    env: dict[str, str],
    output_limit: int,
    *,
    timeout_s: float | None = None,  # this attempt's (agent.retries); else the task's
    started: Callable[[int], None] | None = None,  # called with the script's pid
) -> Outcome:
    """Run the script of ``item`` and say how it ended; secrets masked in the output."""
    params = item.params
    secrets = [v for k, v in item.param_values.items() if k in item.secret_params]
    values = values_for(item, facts)
    try:
        script = templates.render(str(params.get("script", "")), values)
        cwd = templates.render(str(params.get("working_dir") or ""), values)
        task_env = {
            str(k): templates.render(str(v), values) for k, v in (params.get("env") or {}).items()
        }
    except templates.TemplateError as exc:  # the NS checks templates: an older NS's task
        return failed(f"the task's template is not valid: {exc}")
    account = None
    if params.get("run_as"):
        try:
            account = accounts.resolve(str(params["run_as"]))
        except accounts.RunAsError as exc:
            return failed(str(exc))
    if cwd and not os.path.isdir(cwd):
        return failed(f"working directory {cwd!r} does not exist on this computer")
    try:
        ran = await run_script(
            str(params.get("interpreter", "sh")),
            script,
            item.timeout_s if timeout_s is None else timeout_s,
            env={**task_env, **env},
            output_limit=output_limit,
            cwd=cwd or None,
            account=account,
            started=started,
        )
    except OSError as exc:  # e.g. the working directory went away, or exec was refused
        return failed(f"the script could not be started: {exc}")
    # Output cut at the limit may end with the beginning of a secret: masked too.
    kept, marker, dropped = ran.output.partition(_CUT)
    output = templates.mask(kept, secrets, cut=bool(marker)) + marker + dropped
    if ran.error:
        return failed(ran.error)
    if ran.timed_out:
        note = f"\n[taskfleet: killed after the {item.timeout_s:g}s timeout]"
        return Outcome(InstanceState.TIMED_OUT, ran.return_code, output + note)
    if ran.return_code in success_codes(params):
        return Outcome(InstanceState.SUCCEEDED, ran.return_code, output)
    return Outcome(InstanceState.FAILED, ran.return_code, output)
