"""Commands that run the long-lived services: ``ns serve``, ``taskserver serve``, ``agent run``."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from taskfleet.agent import enrolment_token
from taskfleet.cli.client import fail
from taskfleet.cli.when import kept_for, output_size
from taskfleet.errors import TaskfleetError

if TYPE_CHECKING:
    from taskfleet.taskserver.settings import TaskServerSettings

ns = typer.Typer(help="The notification server.")
agent = typer.Typer(help="The agent that runs on every managed computer.")


@ns.command("serve")
def ns_serve(
    db: Annotated[str, typer.Option(help="sqlite:///path/ns.db or postgresql://user@host/db")],
    bind: Annotated[str, typer.Option(help="HOST:PORT to listen on")] = "127.0.0.1:8400",
    data_dir: Annotated[Path, typer.Option(help="where the NS keeps its admin credential")] = Path(
        "taskfleet-ns"
    ),
    public_url: Annotated[str, typer.Option(help="URL agents use to reach this NS")] = "",
    ts_capacity: Annotated[
        float,
        typer.Option(help="requests/s one task server answers, for the R7 scale advice"),
    ] = 9000.0,
    http_server: Annotated[
        str, typer.Option(help="uvicorn (default) or granian; see docs/benchmarks.md")
    ] = "uvicorn",
    insecure_http: Annotated[
        bool,
        typer.Option(
            "--insecure-http",
            help="serve plain HTTP without the CA (tests only; warned about at every start)",
        ),
    ] = False,
    cert_days: Annotated[
        float, typer.Option(help="days node certificates are valid (renewed at 2/3)")
    ] = 90.0,
    keep_history: Annotated[
        str, typer.Option(help="prune runs (with instances, status records) older: 90d, 0 never")
    ] = "90d",
    keep_audit: Annotated[
        str, typer.Option(help="prune audit entries older than this: 365d, 0 never")
    ] = "365d",
    max_output: Annotated[
        str, typer.Option(help="most script output stored per instance: 1MiB, 512KiB ... 4MiB")
    ] = "4MiB",
) -> None:
    """Run the notification server over HTTPS with its own CA (migrates the database first)."""
    from taskfleet.app import create_app
    from taskfleet.ns.settings import NSSettings
    from taskfleet.server.serve import check_http_server, parse_bind, run
    from taskfleet.storage.database import async_url

    try:
        parse_bind(bind)
        async_url(db)
        server = check_http_server(http_server)
    except TaskfleetError as exc:
        fail(exc.message)
    if not 1 <= ts_capacity <= 10_000_000:
        fail(f"--ts-capacity {ts_capacity:g}: give requests per second, 1 to 10,000,000")
    if not 0.0001 <= cert_days <= 3650:
        fail(f"--cert-days {cert_days:g}: give days, up to 3650")
    settings = NSSettings(
        db_url=db,
        bind=bind,
        data_dir=data_dir,
        public_url=public_url,
        ts_capacity_rps=ts_capacity,
        insecure_http=insecure_http,
        node_cert_days=cert_days,
        keep_history_s=kept_for(keep_history, "--keep-history"),
        keep_audit_s=kept_for(keep_audit, "--keep-audit"),
        max_output_bytes=output_size(max_output, "--max-output"),
    )
    if insecure_http:
        run(create_app(settings), bind, http_server=server)
        return
    from taskfleet.ns import tls

    authority, created = tls.load(settings)
    if created:
        print(f"taskfleet: first start; certificate authority created in {authority.dir}")
    context = tls.server_context(authority, settings)
    try:
        run(create_app(settings, authority, context), bind, http_server=server, tls=context)
    except TaskfleetError as exc:
        fail(exc.message)


def taskserver_serve(
    ns_url: Annotated[str, typer.Option("--ns", help="URL of the notification server")],
    bind: Annotated[str, typer.Option(help="HOST:PORT to listen on")] = "127.0.0.1:8410",
    data_dir: Annotated[Path, typer.Option(help="identity and status spool")] = Path(
        "taskfleet-ts"
    ),
    # The enrolment token (first start only): a file or TASKFLEET_TOKEN, not the argv.
    token_file: Annotated[
        Path | None, typer.Option(help=enrolment_token.FILE_HELP, show_default=False)
    ] = None,
    token: Annotated[str, typer.Option(help=enrolment_token.ARGV_HELP)] = "",
    url: Annotated[str, typer.Option(help="URL agents use to reach it (default http://BIND)")] = "",
    name: Annotated[str, typer.Option(help="name to register under (default: host name)")] = "",
    address: Annotated[
        list[str] | None, typer.Option(help="report this IP/PREFIX; repeatable")
    ] = None,
    client_limit: Annotated[int, typer.Option(help="most agents it takes (R3)")] = 5000,
    heartbeat: Annotated[float, typer.Option(help="seconds between heartbeats (R2)")] = 10.0,
    status_batch_interval: Annotated[
        float, typer.Option(help="seconds between status batches")
    ] = 1.0,
    http_server: Annotated[
        str, typer.Option(help="uvicorn (default) or granian; see docs/benchmarks.md")
    ] = "uvicorn",
    ca_fingerprint: Annotated[
        str,
        typer.Option(
            envvar="TASKFLEET_CA_FINGERPRINT",
            help="SHA-256 fingerprint of the NS's CA (first start; 'taskfleet ca show')",
        ),
    ] = "",
    insecure_http: Annotated[
        bool,
        typer.Option(
            "--insecure-http", help="plain HTTP to an NS run with --insecure-http (tests only)"
        ),
    ] = False,
) -> None:
    """Run a task server: registers, waits for approval (R1), relays work and status."""
    from taskfleet.server.serve import check_http_server, parse_bind, run
    from taskfleet.taskserver.app import create_app
    from taskfleet.taskserver.settings import TaskServerSettings

    try:
        parse_bind(bind)
        server = check_http_server(http_server)
        token = enrolment_token.read(token_file, token)
    except TaskfleetError as exc:
        fail(exc.message)
    settings = TaskServerSettings(
        ns_url=ns_url,
        bind=bind,
        data_dir=data_dir,
        token=token,
        url=url,
        name=name,
        addresses=address or [],
        client_limit=client_limit,
        heartbeat_period_s=heartbeat,
        status_batch_interval_s=status_batch_interval,
        ca_fingerprint=ca_fingerprint,
        insecure_http=insecure_http,
    )
    try:
        context = _taskserver_tls(settings)
        run(create_app(settings, context), bind, http_server=server, tls=context)
    except TaskfleetError as exc:
        fail(exc.message)


def _taskserver_tls(settings: TaskServerSettings) -> ssl.SSLContext | None:
    """Trust the NS (fetch and pin its CA on first start) and the context to serve with."""
    import asyncio

    from taskfleet.protocol.trust import NodeTrust
    from taskfleet.taskserver import tls

    trust = NodeTrust(
        settings.data_dir,
        settings.ns_url,
        settings.ca_fingerprint,
        settings.insecure_http,
        "taskserver",
    )
    trust.check_url(settings.url, "--url")
    if trust.insecure:
        return None
    asyncio.run(trust.bootstrap())
    return tls.server_context(trust)


@agent.command(
    "run",
    context_settings={
        "allow_extra_args": True,
        "ignore_unknown_options": True,
        "help_option_names": [],
    },
    add_help_option=False,
)
def agent_run(ctx: typer.Context) -> None:
    """Run the agent (see 'taskfleet agent run --help' for its options)."""
    from taskfleet.agent.cli import main

    raise typer.Exit(main(list(ctx.args)))
