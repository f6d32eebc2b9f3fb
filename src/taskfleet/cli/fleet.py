"""Commands for the fleet: task servers, computers, collections, sites (tokens: cli.identity)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer

from taskfleet.cli.client import Context, fail
from taskfleet.cli.output import ago, emit_json, fields, table

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]

taskserver = typer.Typer(
    help="Task servers: list, approve, revoke (R1), set limits; 'serve' runs one."
)
computer = typer.Typer(
    help="Computers: list and show (with why it has its task server); reset an identity."
)
collection = typer.Typer(help="Collections: named sets of computers.")
site = typer.Typer(help="Sites: places made of subnets, served by task servers.")


def _ctx(ctx: typer.Context) -> Context:
    obj: Context = ctx.obj
    return obj


@taskserver.command("list")
def taskserver_list(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Task servers with approval, availability (R2), load and last heartbeat."""
    rows = _ctx(ctx).api().get("/api/taskservers")
    if json:
        return emit_json(rows)
    table(
        "Task servers",
        ["name", "approval", "available", "agents", "limit", "period", "heartbeat", "dead", "url"],
        [
            [
                r["name"],
                r["approval"],
                "yes" if r["available"] else f"no: {r['why_unavailable']}",
                r["agents"],
                _setting(r, "client_limit", ""),
                _setting(r, "heartbeat_period_s", "s"),
                ago(r["last_heartbeat"]),
                r.get("dead_letters", 0),
                r["url"],
            ]
            for r in rows
        ],
    )
    for r in rows:
        if r.get("dead_letters"):
            typer.echo(_dead_letters(r))


def _dead_letters(row: dict[str, Any]) -> str:
    return (
        f"{row['name']}: {row['dead_letters']} status event(s) set aside in its dead-letter "
        f"file (dead-letters.jsonl in its state directory); latest: {row['dead_letter_reason']}"
    )


@taskserver.command("show")
def taskserver_show(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="name or id")],
    json: JsonOpt = False,
) -> None:
    """One task server: approval, availability (R2), settings, load, dead letters (R12)."""
    rows = _ctx(ctx).api().get("/api/taskservers")
    found = [r for r in rows if key in (r["name"], str(r["id"]))]
    if not found:
        fail(f"no task server {key!r}; 'taskfleet taskserver list' shows them")
    r = found[0]
    if json:
        return emit_json(r)
    fields(
        f"Task server {r['name']}",
        [
            ("id", r["id"]),
            ("url", r["url"]),
            ("approval", r["approval"]),
            ("available", "yes" if r["available"] else f"no: {r['why_unavailable']}"),
            ("last heartbeat", ago(r["last_heartbeat"])),
            ("agents", f"{r['agents']} of {_setting(r, 'client_limit', '')}"),
            ("heartbeat period", _setting(r, "heartbeat_period_s", "s")),
            ("addresses", " ".join(r["addresses"])),
            ("dead letters", r.get("dead_letters", 0)),
            ("latest dead letter", r.get("dead_letter_reason") or ""),
        ],
    )


def _setting(row: dict[str, Any], key: str, unit: str) -> str:
    """A value in effect, marked when an admin set it ('taskfleet taskserver set')."""
    value = row[key]
    text = f"{value if isinstance(value, int) else format(value, 'g')}{unit}"
    return f"{text} (admin)" if row.get(f"admin_{key}") is not None else text


def _approval(ctx: typer.Context, name: str, verb: str, json: bool) -> None:
    result = _ctx(ctx).api().post(f"/api/taskservers/{quote(name, safe='')}/{verb}")
    if json:
        return emit_json(result)
    typer.echo(f"task server {result['name']} is now {result['approval']}")


@taskserver.command("approve")
def taskserver_approve(ctx: typer.Context, name: str, json: JsonOpt = False) -> None:
    """Approve a task server so it may serve agents (R1)."""
    _approval(ctx, name, "approve", json)


@taskserver.command("revoke")
def taskserver_revoke(ctx: typer.Context, name: str, json: JsonOpt = False) -> None:
    """Revoke a task server: every call it makes is refused from now on (R1)."""
    _approval(ctx, name, "revoke", json)


SET_HELP = (
    "Set a task server's client limit or heartbeat period from the NS, audited.\n\n"
    "A task server reports its own --client-limit and --heartbeat whenever it starts. A "
    "value set here wins over what it reports, also after it restarts, until you clear it "
    "with --clear-client-limit or --clear-heartbeat.\n\n"
    "The task server keeps beating at its own --heartbeat, so a period set here below a "
    "third of that makes it look stale (R2). A lower client limit moves no agent (R4); the "
    "task server only takes no more."
)


@taskserver.command("set", help=SET_HELP)
def taskserver_set(
    ctx: typer.Context,
    name: str,
    client_limit: Annotated[int | None, typer.Option(help="most agents it takes (R3)")] = None,
    heartbeat: Annotated[
        float | None,
        typer.Option(help="heartbeat period in seconds the NS expects: stale after 3 (R2)"),
    ] = None,
    clear_client_limit: Annotated[
        bool, typer.Option(help="use the task server's own --client-limit again")
    ] = False,
    clear_heartbeat: Annotated[
        bool, typer.Option(help="use the task server's own --heartbeat again")
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Set or clear the admin's values (what users read is ``SET_HELP``)."""
    body: dict[str, float | None] = {}
    for key, value, clear, flag in [
        ("client_limit", client_limit, clear_client_limit, "--client-limit"),
        ("heartbeat_period_s", heartbeat, clear_heartbeat, "--heartbeat"),
    ]:
        if value is not None and clear:
            fail(f"give {flag} or --clear-{flag[2:]}, not both")
        if value is not None or clear:
            body[key] = value
    if not body:
        fail("nothing to set: give --client-limit, --heartbeat or a --clear-... option")
    row = _ctx(ctx).api().request("PATCH", f"/api/taskservers/{quote(name, safe='')}", json=body)
    if json:
        return emit_json(row)
    typer.echo(
        f"task server {row['name']}: client limit {_setting(row, 'client_limit', '')}, "
        f"heartbeat every {_setting(row, 'heartbeat_period_s', 's')} "
        f"(it reports {row['reported_client_limit']} and "
        f"{row['reported_heartbeat_period_s']:g}s)"
    )
    if row.get("warning"):
        typer.echo(f"warning: {row['warning']}", err=True)


@computer.command("list")
def computer_list(
    ctx: typer.Context,
    search: Annotated[str, typer.Option(help="part of a name or OS")] = "",
    limit: int = 100,
    offset: int = 0,
    json: JsonOpt = False,
) -> None:
    """Computers with their task server and last contact."""
    result = (
        _ctx(ctx)
        .api()
        .get("/api/computers", params={"search": search, "limit": limit, "offset": offset})
    )
    if json:
        return emit_json(result)
    table(
        f"Computers ({result['total']})",
        ["id", "name", "addresses", "os", "task server", "by", "last contact"],
        [
            [
                c["id"],
                c["name"],
                " ".join(c["addresses"]),
                c["os"],
                c["task_server"],
                c["assign_step"],
                ago(c["last_contact"]),
            ]
            for c in result["computers"]
        ],
    )


@computer.command("show")
def computer_show(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="name or id")],
    json: JsonOpt = False,
) -> None:
    """One computer: facts, collections, its task server and why (R3), recent runs."""
    c = _ctx(ctx).api().get(f"/api/computers/{quote(key, safe='')}")
    if json:
        return emit_json(c)
    fields(
        f"Computer {c['name']}",
        [
            ("id", c["id"]),
            *([("hardware id", c["hardware_id"])] if "hardware_id" in c else []),
            ("addresses", " ".join(c["addresses"])),
            ("os", c["os"]),
            ("agent", c["agent_version"]),
            ("interpreters", ", ".join(c["interpreters"])),
            ("last contact", ago(c["last_contact"])),
            ("collections", ", ".join(c["collections"])),
            ("task server", c["task_server"]),
            ("chosen by", c["assign_step"]),
            ("why", c["assign_reason"]),
            ("last inventory", ago(c.get("inventory_at"))),
        ],
    )
    facts = {**c.get("facts", {}), **c.get("inventory", {})}
    if facts:  # (what collection rules compare, and the last inventory's measurements)
        table("Facts", ["fact", "value"], sorted(facts.items()))
    if c["runs"]:
        table(
            "Recent runs",
            ["run", "task", "state", "rc"],
            [[r["run"], r["task"], r["state"], r["return_code"]] for r in c["runs"]],
        )


@collection.command("create")
def collection_create(
    ctx: typer.Context,
    name: str,
    description: str = "",
    name_pattern: Annotated[str | None, typer.Option(help="e.g. 'web-*'")] = None,
    cidr: Annotated[list[str] | None, typer.Option(help="subnet; repeatable")] = None,
    os: Annotated[str | None, typer.Option(help="OS pattern, e.g. 'Linux*'")] = None,
    fact: Annotated[list[str] | None, typer.Option(help="NAME=VALUE; repeatable")] = None,
    include: Annotated[
        list[str] | None, typer.Option(help="another collection; repeatable")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="another collection; repeatable")
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Create a collection: static members (add them after), dynamic rules, or both."""
    rules: dict[str, Any] = {}
    if name_pattern:
        rules["name_pattern"] = name_pattern
    if os:
        rules["os"] = os
    for key, value in (("cidr", cidr), ("include", include), ("exclude", exclude)):
        if value:
            rules[key] = value
    if fact:
        pairs = [f.split("=", 1) for f in fact]
        if any(len(p) != 2 for p in pairs):
            fail("--fact takes NAME=VALUE")
        rules["fact"] = dict(pairs)
    result = (
        _ctx(ctx)
        .api()
        .post("/api/collections", {"name": name, "description": description, "rules": rules})
    )
    if json:
        return emit_json(result)
    typer.echo(f"collection {result['name']} created")


def _find_id(ctx: typer.Context, kind: str, name: str) -> int:
    """The id of the collection or site called ``name``: the API addresses them by id, as a
    name may hold any character ('/', '?', '#', '%')."""
    rows = _ctx(ctx).api().get(f"/api/{kind}s", params={"name": name})
    if not rows:
        fail(f"no {kind} named {name!r}; 'taskfleet {kind} list' shows them")
    return int(rows[0]["id"])


def _members(ctx: typer.Context, name: str, computers: list[str], verb: str, json: bool) -> None:
    collection_id = _find_id(ctx, "collection", name)
    path = f"/api/collections/{collection_id}/members" + ("/remove" if verb == "remove" else "")
    result = _ctx(ctx).api().post(path, {"computers": computers})
    if json:
        return emit_json(result)
    typer.echo(
        f"{'added to' if verb == 'add' else 'removed from'} {name}: {', '.join(result['changed'])}"
    )


@collection.command("add")
def collection_add(
    ctx: typer.Context, name: str, computers: list[str], json: JsonOpt = False
) -> None:
    """Add computers (names or ids) as static members."""
    _members(ctx, name, computers, "add", json)


@collection.command("remove")
def collection_remove(
    ctx: typer.Context, name: str, computers: list[str], json: JsonOpt = False
) -> None:
    """Remove static members."""
    _members(ctx, name, computers, "remove", json)


@collection.command("list")
def collection_list(ctx: typer.Context, json: JsonOpt = False) -> None:
    rows = _ctx(ctx).api().get("/api/collections")
    if json:
        return emit_json(rows)
    table(
        "Collections",
        ["name", "members", "built in", "rules"],
        [[r["name"], r["members"], "yes" if r["builtin"] else "", r["rules"] or ""] for r in rows],
    )


@collection.command("show")
def collection_show(ctx: typer.Context, name: str, json: JsonOpt = False) -> None:
    c = _ctx(ctx).api().get(f"/api/collections/{_find_id(ctx, 'collection', name)}")
    if json:
        return emit_json(c)
    table(
        f"Collection {c['name']} ({len(c['members'])} members)",
        ["id", "name"],
        [[m["id"], m["name"]] for m in c["members"]],
    )


@site.command("create")
def site_create(
    ctx: typer.Context,
    name: str,
    subnets: Annotated[list[str] | None, typer.Argument()] = None,
    json: JsonOpt = False,
) -> None:
    """Create a site from subnets (CIDR)."""
    result = _ctx(ctx).api().post("/api/sites", {"name": name, "subnets": subnets or []})
    if json:
        return emit_json(result)
    typer.echo(f"site {result['name']}: {', '.join(result['subnets']) or 'no subnets yet'}")


@site.command("add-subnet")
def site_add_subnet(ctx: typer.Context, name: str, subnet: str, json: JsonOpt = False) -> None:
    site_id = _find_id(ctx, "site", name)
    result = _ctx(ctx).api().post(f"/api/sites/{site_id}/subnets", {"subnet": subnet})
    if json:
        return emit_json(result)
    typer.echo(f"site {result['name']}: {', '.join(result['subnets'])}")


@site.command("add-taskserver")
def site_add_taskserver(
    ctx: typer.Context, name: str, task_server: str, json: JsonOpt = False
) -> None:
    """Make a task server serve a site (besides the sites its own address is in)."""
    site_id = _find_id(ctx, "site", name)
    result = _ctx(ctx).api().post(f"/api/sites/{site_id}/taskservers", {"task_server": task_server})
    if json:
        return emit_json(result)
    typer.echo(f"task server {result['task_server']} serves site {result['name']}")


@site.command("list")
def site_list(ctx: typer.Context, json: JsonOpt = False) -> None:
    rows = _ctx(ctx).api().get("/api/sites")
    if json:
        return emit_json(rows)
    table(
        "Sites",
        ["name", "subnets", "task servers (explicit)"],
        [[r["name"], ", ".join(r["subnets"]), ", ".join(r["task_servers"])] for r in rows],
    )
