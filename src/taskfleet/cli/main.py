"""The ``taskfleet`` command tree (SPEC section 4). ``taskfleet --help`` shows all of it."""

from __future__ import annotations

from typing import Annotated

import typer

from taskfleet.cli import (
    ca,
    demo,
    files,
    fleet,
    history,
    identity,
    jobs,
    lifecycle,
    policy,
    schedules,
    services,
    simulate,
    users,
    work,
)
from taskfleet.cli.global_options import PANEL, GlobalOptionsGroup, begin, record

app = typer.Typer(
    help="taskfleet: deliver tasks to every computer through relay task servers, and bring every "
    "result back.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=GlobalOptionsGroup,  # the options below, before or after the command
)


@app.callback()
def root(
    ctx: typer.Context,
    ns: Annotated[
        str | None,
        typer.Option(
            "--ns", help="NS URL (or TASKFLEET_NS)", callback=record, rich_help_panel=PANEL
        ),
    ] = None,
    credential: Annotated[
        str | None,
        typer.Option(
            "--credential",
            help="admin credential file (or TASKFLEET_CREDENTIAL)",
            callback=record,
            rich_help_panel=PANEL,
        ),
    ] = None,
    json: Annotated[
        bool,
        typer.Option(
            "--json", help="print JSON instead of a table", callback=record, rich_help_panel=PANEL
        ),
    ] = False,
) -> None:
    # The values are on the Context already: record() keeps them wherever they are typed.
    begin(ctx)


fleet.taskserver.command("serve")(services.taskserver_serve)
app.add_typer(services.ns, name="ns")
app.add_typer(fleet.taskserver, name="taskserver")
app.add_typer(services.agent, name="agent")
app.add_typer(identity.token, name="token")
app.add_typer(ca.ca, name="ca")
app.add_typer(fleet.computer, name="computer")
app.add_typer(fleet.collection, name="collection")
app.add_typer(fleet.site, name="site")
app.add_typer(policy.policy, name="policy")
app.add_typer(policy.agent_config, name="agent-config")
app.add_typer(users.user, name="user")
app.add_typer(work.task, name="task")
app.add_typer(jobs.job, name="job")
work.task.command("copy-file")(files.task_copy_file)
work.task.command("power")(files.task_power)
work.task.command("inventory")(files.task_inventory)
app.add_typer(files.file, name="file")
app.add_typer(schedules.schedule, name="schedule")
fleet.collection.command("windows")(schedules.collection_windows)
app.command("run")(work.run_command)
app.command("run-status")(work.run_status)
app.command("run-cancel")(lifecycle.run_cancel)
app.command("run-list")(history.run_list)
app.command("run-output")(history.run_output)
app.command("demo")(demo.demo)
app.command("simulate")(simulate.simulate)
