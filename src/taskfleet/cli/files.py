"""Files for copy-file tasks, and creating copy-file, power-control and inventory tasks.

taskfleet file upload PATH [--name N]    stored on the NS, addressed by SHA-256
taskfleet file list | show KEY | remove KEY
taskfleet task copy-file NAME --file N --path /etc/motd [--mode 0644] [--owner U]
taskfleet task power NAME --action restart [--delay 300] [--message TEXT]
taskfleet task inventory NAME            (a built-in 'Inventory' task exists)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from taskfleet.cli.client import Api, Context, fail
from taskfleet.cli.output import ago, emit_json, table

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
MAX_FILE_BYTES = 256 * 1024 * 1024  # ns.files.MAX_FILE_BYTES (the NS says so too)

file = typer.Typer(help="Files for copy-file tasks, stored on the NS by SHA-256.")


def _api(ctx: typer.Context) -> Api:
    obj: Context = ctx.obj
    return obj.api()


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MiB"


@file.command("upload")
def file_upload(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="the file to upload")],
    name: Annotated[str | None, typer.Option(help="its name on the NS (default: PATH's)")] = None,
    json: JsonOpt = False,
) -> None:
    """Upload a file (streamed) for copy-file tasks."""
    try:
        size = path.stat().st_size
        fh = path.open("rb")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    if size > MAX_FILE_BYTES:
        fail(f"{path} has {size} bytes; the NS takes files of at most {MAX_FILE_BYTES} bytes")
    with fh:
        stored = _api(ctx).request(
            "POST",
            "/api/files",
            params={"name": name or path.name},
            content=fh,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )
    if json:
        return emit_json(stored)
    typer.echo(f"file {stored['name']} stored ({stored['size']} bytes, SHA-256 {stored['sha256']})")


@file.command("list")
def file_list(ctx: typer.Context, json: JsonOpt = False) -> None:
    rows = _api(ctx).get("/api/files")
    if json:
        return emit_json(rows)
    table(
        "Files",
        ["name", "size", "SHA-256", "uploaded", "by", "used by"],
        [
            [
                f["name"],
                _size(f["size"]),
                f["sha256"],
                ago(f["created_at"]),
                f["created_by"],
                ", ".join(f["used_by"]),
            ]
            for f in rows
        ],
    )


@file.command("show")
def file_show(ctx: typer.Context, key: str, json: JsonOpt = False) -> None:
    f = _api(ctx).get(f"/api/files/{quote(key, safe='')}")
    if json:
        return emit_json(f)
    typer.echo(f"{f['name']}: {f['size']} bytes, SHA-256 {f['sha256']}")
    typer.echo(f"uploaded {ago(f['created_at'])} by {f['created_by']}")
    typer.echo(f"used by: {', '.join(f['used_by']) or 'no task'}")


@file.command("remove")
def file_remove(ctx: typer.Context, key: str, json: JsonOpt = False) -> None:
    """Remove a file no copy-file task names."""
    _api(ctx).request("DELETE", f"/api/files/{quote(key, safe='')}")
    if json:
        return emit_json({"removed": key})
    typer.echo(f"file {key} removed")


def _created(result: dict[str, Any], json: bool) -> None:
    if json:
        return emit_json(result)
    typer.echo(f"task {result['name']} created (id {result['id']}, {result['type']})")


def task_copy_file(
    ctx: typer.Context,
    name: str,
    file_name: Annotated[str, typer.Option("--file", help="a stored file's name")],
    path: Annotated[str, typer.Option(help="absolute target path on the computers")],
    mode: Annotated[str, typer.Option(help="octal file mode")] = "0644",
    owner: Annotated[str, typer.Option(help="user or user:group (agents running as root)")] = "",
    timeout: Annotated[float, typer.Option(help="seconds")] = 600.0,
    json: JsonOpt = False,
) -> None:
    """Create a copy-file task: the file is verified by SHA-256 before it is written."""
    body = {
        "name": name,
        "file": file_name,
        "path": path,
        "mode": mode,
        "owner": owner,
        "timeout_s": timeout,
    }
    _created(_api(ctx).post("/api/tasks/copy-file", body), json)


def task_power(
    ctx: typer.Context,
    name: str,
    action: Annotated[str, typer.Option(help="restart, shutdown or logoff")],
    delay: Annotated[int, typer.Option(help="seconds before it happens")] = 0,
    message: Annotated[str, typer.Option(help="shown to the computer's users")] = "",
    timeout: Annotated[float, typer.Option(help="seconds")] = 120.0,
    json: JsonOpt = False,
) -> None:
    """Create a power-control task."""
    body = {
        "name": name,
        "action": action,
        "delay_s": delay,
        "message": message,
        "timeout_s": timeout,
    }
    _created(_api(ctx).post("/api/tasks/power-control", body), json)


def task_inventory(
    ctx: typer.Context,
    name: str,
    timeout: Annotated[float, typer.Option(help="seconds")] = 120.0,
    json: JsonOpt = False,
) -> None:
    """Create an inventory task (the built-in 'Inventory' task does the same)."""
    _created(_api(ctx).post("/api/tasks/inventory", {"name": name, "timeout_s": timeout}), json)
