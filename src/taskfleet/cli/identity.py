"""Commands on who may join: enrolment tokens (create, list, revoke) and computer reset."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from taskfleet.cli.client import Context, fail
from taskfleet.cli.fleet import computer
from taskfleet.cli.output import emit_json, table
from taskfleet.protocol.private_file import write_private

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
token = typer.Typer(
    help="Enrolment tokens for agents and task servers: scoped to one kind, expiring "
    "(24 h unless --expires says otherwise), optionally limited in uses, revocable."
)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def _api(ctx: typer.Context) -> Any:
    obj: Context = ctx.obj
    return obj.api()


def expiry_seconds(text: str) -> float:
    """``--expires``: '30m', '24h', '7d', seconds, or 'never' (also '0')."""
    if text.strip().lower() in ("never", "0"):
        return 0.0
    found = _DURATION.match(text)
    if found is None or float(found.group(1)) <= 0:
        fail(f"--expires {text!r}: give a duration like 30m, 24h or 7d, or 'never'")
    return float(found.group(1)) * _UNITS[found.group(2) or "s"]


def _when(at: float | None) -> str:
    if at is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))


@token.command("create")
def token_create(
    ctx: typer.Context,
    kind: Annotated[str, typer.Option(help="agent or taskserver: it enrols only that kind")] = (
        "agent"
    ),
    label: Annotated[str, typer.Option(help="what it is for (shown by 'token list')")] = "",
    uses: Annotated[int | None, typer.Option(help="enrolments it allows (default: any)")] = None,
    expires: Annotated[
        str | None,
        typer.Option(help="when it expires: 30m, 24h, 7d ... (default 24h); 'never' is audited"),
    ] = None,
    ttl: Annotated[float | None, typer.Option(hidden=True, help="seconds; use --expires")] = None,
    file: Annotated[
        Path | None,
        typer.Option(help="write the token to this file (mode 0600) instead of printing it"),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Create an enrolment token; it is shown once. Hand it to a service in a file
    (--token-file) or the TASKFLEET_TOKEN environment variable, never on its command line."""
    if expires is not None and ttl is not None:
        fail("give --expires or --ttl, not both")
    ttl_s = expiry_seconds(expires) if expires is not None else ttl
    body = {"kind": kind, "label": label, "uses": uses, "ttl_s": ttl_s}
    result = _api(ctx).post("/api/tokens", body)
    if file is not None:
        write_private(file, result["token"] + "\n")
        result = {k: v for k, v in result.items() if k != "token"} | {"file": str(file)}
    if json:
        return emit_json(result)
    if file is None:
        typer.echo(result["token"])
    what = f"token {result['id']} ({kind}"
    what += f", {uses} uses" if uses else ""
    typer.echo(f"{what}) expires: {_when(result['expires_at'])}", err=True)
    if result.get("warning"):
        typer.echo(f"warning: {result['warning']}", err=True)


@token.command("list")
def token_list(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Every enrolment token: label, kind, uses left, expiry and state (never the token)."""
    rows = _api(ctx).get("/api/tokens")
    if json:
        return emit_json(rows)
    table(
        "Enrolment tokens",
        ["id", "label", "kind", "uses left", "expires", "state", "created by"],
        [
            [
                r["id"],
                r["label"],
                r["kind"],
                "any" if r["uses_left"] is None else r["uses_left"],
                _when(r["expires_at"]),
                r["state"] + (f" by {r['revoked_by']}" if r["state"] == "revoked" else ""),
                r["created_by"],
            ]
            for r in rows
        ],
    )


@token.command("revoke")
def token_revoke(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(metavar="ID", help="as 'token list' shows it")],
    json: JsonOpt = False,
) -> None:
    """Revoke a token: every enrolment with it is refused from now on (audited)."""
    result = _api(ctx).post(f"/api/tokens/{quote(token_id, safe='')}/revoke")
    if json:
        return emit_json(result)
    typer.echo(f"token {result['id']} ({result['label'] or result['kind']}) revoked")


@computer.command("reset")
def computer_reset(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="NAME", help="name or id")],
    json: JsonOpt = False,
) -> None:
    """Reset a computer's identity: its credential stops working now, and the next
    enrolment with its hardware id is accepted once (a reinstalled computer, or a task
    server that lost its data directory; a task server is pending until approved again).
    Without a reset, enrolling with a known hardware id needs that computer's credential."""
    result = _api(ctx).post(f"/api/computers/{quote(key, safe='')}/reset")
    if json:
        return emit_json(result)
    typer.echo(
        f"computer {result['name']} (id {result['id']}) reset: its next enrolment is accepted "
        "once (the agent needs a valid enrolment token)"
    )
    if result.get("task_server"):
        typer.echo(
            f"task server {result['task_server']} is pending: approve it again once it has "
            "registered ('taskfleet taskserver approve')"
        )
