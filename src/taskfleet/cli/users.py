"""``taskfleet user``: users and their roles (viewer, operator, admin)."""

from __future__ import annotations

import sys
from typing import Annotated
from urllib.parse import quote

import typer

from taskfleet.cli.client import Context, fail
from taskfleet.cli.output import ago, emit_json, table

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
user = typer.Typer(
    help="Users and roles: a viewer sees everything and changes nothing, an operator also "
    "runs tasks, an admin does everything."
)


def _ctx(ctx: typer.Context) -> Context:
    obj: Context = ctx.obj
    return obj


def _password(from_stdin: bool) -> str | None:
    if not from_stdin:
        return None
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        fail("--password-stdin: standard input held no password")
    return password


@user.command("create")
def user_create(
    ctx: typer.Context,
    name: str,
    role: Annotated[str, typer.Option(help="viewer, operator or admin")] = "viewer",
    password_stdin: Annotated[
        bool, typer.Option(help="read a console password from standard input")
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Create a user; prints its API credential, shown this once."""
    body = {"name": name, "role": role, "password": _password(password_stdin)}
    result = _ctx(ctx).api().post("/api/users", body)
    if json:
        return emit_json(result)
    typer.echo(f"user {result['name']} ({result['role']}) created; API credential:")
    typer.echo(result["credential"])


@user.command("list")
def user_list(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Users with role, console login and last login."""
    rows = _ctx(ctx).api().get("/api/users")
    if json:
        return emit_json(rows)
    table(
        "Users",
        ["name", "role", "console", "last login", "state"],
        [
            [
                r["name"],
                r["role"],
                "yes" if r["console_login"] else "no password",
                ago(r["last_login"]),
                "disabled" if r["disabled"] else "enabled",
            ]
            for r in rows
        ],
    )


@user.command("set-role")
def user_set_role(ctx: typer.Context, name: str, role: str, json: JsonOpt = False) -> None:
    """Change a user's role."""
    result = _ctx(ctx).api().post(f"/api/users/{quote(name, safe='')}/role", {"role": role})
    if json:
        return emit_json(result)
    typer.echo(f"user {result['name']} is now {result['role']}")


@user.command("set-password")
def user_set_password(ctx: typer.Context, name: str, json: JsonOpt = False) -> None:
    """Set a user's console password, read from standard input; ends their sessions."""
    password = _password(True)
    result = (
        _ctx(ctx).api().post(f"/api/users/{quote(name, safe='')}/password", {"password": password})
    )
    if json:
        return emit_json(result)
    typer.echo(f"console password of {result['name']} set")


@user.command("disable")
def user_disable(ctx: typer.Context, name: str, json: JsonOpt = False) -> None:
    """Disable a user: their credential and console sessions stop working."""
    result = _ctx(ctx).api().post(f"/api/users/{quote(name, safe='')}/disable")
    if json:
        return emit_json(result)
    typer.echo(f"user {result['name']} is disabled")
