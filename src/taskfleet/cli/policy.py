"""Commands for the Task Servers policy and the agent configuration (R3, R5, R9).

Every command but ``apply`` edits the draft; ``apply`` makes it one numbered version.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from taskfleet.cli.client import Api, Context
from taskfleet.cli.output import console, emit_json, table

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]

policy = typer.Typer(
    help="The Task Servers policy: per collection, an ordered list of task servers (R3, R9)."
)
agent_config = typer.Typer(
    help="Agent configuration per collection: intervals and priority (R5, R9)."
)


def _api(ctx: typer.Context) -> Api:
    obj: Context = ctx.obj
    return obj.api()


def _show(ctx: typer.Context, kind: str, json: bool) -> None:
    api = _api(ctx)
    doc = api.get(f"/api/documents/{kind}")
    if kind == "agent-config":
        # R7, for the draft as if applied: what the admin is about to make effective.
        doc["advice"] = api.get("/api/advice", params={"draft": "true"})
    if json:
        return emit_json(doc)
    applied = doc["applied"]
    version = (
        f"version {applied['version']} applied by {applied['applied_by']}"
        if applied
        else "never applied"
    )
    entries = doc["draft"]["entries"]
    if kind == "policy":
        rows = [
            [i + 1, e["collection"], " -> ".join(e["task_servers"])] for i, e in enumerate(entries)
        ]
        columns = ["#", "collection", "task servers, in order"]
    else:
        rows = [
            [
                i + 1,
                e["collection"],
                f"{e['task_request_interval_min']:g} min",
                f"{e['send_status_interval_s']:g} s",
                f"{e.get('inventory_interval_h', 24):g} h",
            ]
            for i, e in enumerate(entries)
        ]
        columns = [
            "priority",
            "collection",
            "task request interval",
            "send status interval",
            "inventory interval",
        ]
    table(f"{kind} ({version})", columns, rows)
    if doc["unapplied"]:
        console.print(
            f"[bold yellow]Unapplied changes:[/] run 'taskfleet {kind} apply' "
            "to make them take effect."
        )
    for advice in doc.get("advice", []):
        for warning in advice["warnings"]:
            console.print(f"[bold red]Scale warning (R7)[/], {advice['scope']}: {warning}")


def _apply(ctx: typer.Context, kind: str, json: bool) -> None:
    result = _api(ctx).post(f"/api/documents/{kind}/apply")
    if json:
        return emit_json(result)
    typer.echo(f"{kind} version {result['version']} applied")


@policy.command("show")
def policy_show(ctx: typer.Context, json: JsonOpt = False) -> None:
    """The draft (what 'apply' would make effective) and the applied version."""
    _show(ctx, "policy", json)


@policy.command("set")
def policy_set(
    ctx: typer.Context,
    collection: str,
    task_servers: Annotated[
        list[str] | None, typer.Argument(help="in order; none removes the entry")
    ] = None,
    position: Annotated[
        int | None, typer.Option(help="place of this collection in the policy, from 1")
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Set a collection's ordered list of task servers in the draft."""
    api = _api(ctx)
    if task_servers:
        result = api.post(
            "/api/documents/policy/draft/entries",
            {
                "entry": {"collection": collection, "task_servers": task_servers},
                "position": position,
            },
        )
    else:
        result = api.post("/api/documents/policy/draft/entries/remove", {"collection": collection})
    if json:
        return emit_json(result)
    typer.echo("draft saved; run 'taskfleet policy apply' to make it take effect")


@policy.command("apply")
def policy_apply(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Make the draft effective as a new numbered version."""
    _apply(ctx, "policy", json)


@agent_config.command("show")
def agent_config_show(ctx: typer.Context, json: JsonOpt = False) -> None:
    _show(ctx, "agent-config", json)


@agent_config.command("set")
def agent_config_set(
    ctx: typer.Context,
    collection: str,
    # The flag keeps its name; the value is in minutes, like the document's key.
    task_request_interval_min: Annotated[
        float, typer.Option("--task-request-interval", help="minutes between polls")
    ] = 5.0,
    send_status_interval: Annotated[
        float, typer.Option(help="seconds between status sends")
    ] = 60.0,
    priority: Annotated[int | None, typer.Option(help="1 is the highest")] = None,
    output_limit_kib: Annotated[
        int, typer.Option(help="script output kept per instance, KiB (4 to 4096); more is cut")
    ] = 1024,
    inventory_interval: Annotated[
        float, typer.Option(help="hours between the agents' inventory reports")
    ] = 24.0,
    remove: Annotated[bool, typer.Option(help="remove this collection's entry")] = False,
    json: JsonOpt = False,
) -> None:
    """Set a collection's agent intervals in the draft."""
    api = _api(ctx)
    if remove:
        result = api.post(
            "/api/documents/agent-config/draft/entries/remove", {"collection": collection}
        )
    else:
        entry = {
            "collection": collection,
            "task_request_interval_min": task_request_interval_min,
            "send_status_interval_s": send_status_interval,
            "output_limit_kib": output_limit_kib,
            "inventory_interval_h": inventory_interval,
        }
        result = api.post(
            "/api/documents/agent-config/draft/entries", {"entry": entry, "position": priority}
        )
    if json:
        return emit_json(result)
    typer.echo("draft saved; run 'taskfleet agent-config apply' to make it take effect")


@agent_config.command("apply")
def agent_config_apply(ctx: typer.Context, json: JsonOpt = False) -> None:
    _apply(ctx, "agent-config", json)


Direction = Annotated[str, typer.Argument(help="up or down")]


def _edited(ctx: typer.Context, path: str, body: dict[str, Any], json: bool, kind: str) -> None:
    result = _api(ctx).post(path, body)
    if json:
        return emit_json(result)
    typer.echo(f"draft saved; run 'taskfleet {kind} apply' to make it take effect")


@policy.command("add")
def policy_add(
    ctx: typer.Context, collection: str, task_server: str, json: JsonOpt = False
) -> None:
    """Put a task server last on a collection's list in the draft (a new list if none)."""
    body = {"collection": collection, "task_server": task_server}
    _edited(ctx, "/api/documents/policy/draft/task-servers", body, json, "policy")


@policy.command("move")
def policy_move(
    ctx: typer.Context,
    collection: str,
    task_server: str,
    direction: Direction,
    json: JsonOpt = False,
) -> None:
    """Move a task server one place up or down on a collection's list in the draft."""
    body = {"collection": collection, "task_server": task_server, "direction": direction}
    _edited(ctx, "/api/documents/policy/draft/task-servers/move", body, json, "policy")


@policy.command("remove")
def policy_remove(
    ctx: typer.Context, collection: str, task_server: str, json: JsonOpt = False
) -> None:
    """Take a task server off a collection's list in the draft (an emptied list goes)."""
    body = {"collection": collection, "task_server": task_server}
    _edited(ctx, "/api/documents/policy/draft/task-servers/remove", body, json, "policy")


@policy.command("move-collection")
def policy_move_collection(
    ctx: typer.Context, collection: str, direction: Direction, json: JsonOpt = False
) -> None:
    """Move a collection's list one place earlier or later in policy order (R3)."""
    body = {"collection": collection, "direction": direction}
    _edited(ctx, "/api/documents/policy/draft/entries/move", body, json, "policy")


@agent_config.command("move")
def agent_config_move(
    ctx: typer.Context, collection: str, direction: Direction, json: JsonOpt = False
) -> None:
    """Move a collection's entry one place up (higher priority) or down in the draft."""
    body = {"collection": collection, "direction": direction}
    _edited(ctx, "/api/documents/agent-config/draft/entries/move", body, json, "agent-config")
