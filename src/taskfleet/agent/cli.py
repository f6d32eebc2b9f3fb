"""``taskfleet agent run``: the agent's own entry point.

Parsed with the standard library's argparse so that the agent process never
imports the admin CLI's libraries (Typer, Rich): it runs on every computer.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from taskfleet.agent import enrolment_token
from taskfleet.agent.service import Agent, AgentOptions
from taskfleet.errors import TaskfleetError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="taskfleet agent run",
        description="Run the taskfleet agent: enrol, get a task server, run tasks, report status.",
    )
    p.add_argument("--ns", required=True, help="URL of the notification server")
    p.add_argument(
        "--state-dir", required=True, type=Path, help="where the agent keeps its identity and spool"
    )
    # The enrolment token (first start only): a file or TASKFLEET_TOKEN, not the argv.
    p.add_argument("--token-file", type=Path, default=None, help=enrolment_token.FILE_HELP)
    p.add_argument("--token", default=None, help=enrolment_token.ARGV_HELP)
    p.add_argument(
        "--ca-fingerprint",
        default=os.environ.get("TASKFLEET_CA_FINGERPRINT", ""),
        help="SHA-256 fingerprint of the NS's CA (first start; printed by the NS and by "
        "'taskfleet ca show'): the agent refuses any server that does not chain to it",
    )
    p.add_argument(
        "--insecure-http",
        action="store_true",
        help="talk plain HTTP to an NS run with --insecure-http (tests only)",
    )
    p.add_argument("--name", default=None, help="computer name to report (default: host name)")
    p.add_argument(
        "--address",
        action="append",
        default=[],
        metavar="IP/PREFIX",
        help="report this address instead of the detected ones (repeatable)",
    )
    p.add_argument(
        "--startup-window",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="spread the first contact over this many seconds (R11); default 60",
    )
    p.add_argument(
        "--channel-wait",
        type=float,
        default=50.0,
        metavar="SECONDS",
        help="how long one notification-channel long poll is held open",
    )
    p.add_argument(
        "--facts-file",
        type=Path,
        default=None,
        help="custom facts to report, a JSON object of text values such as "
        '{"role": "web"} (default: <state-dir>/facts.json)',
    )
    p.add_argument(
        "--power-test-file",
        type=Path,
        default=None,
        help="test mode: power-control tasks append the command they would run to this "
        "file and run nothing (also TASKFLEET_POWER_TEST_FILE)",
    )
    p.add_argument("--log-level", default="WARNING")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.token = enrolment_token.read(args.token_file, args.token)
    except TaskfleetError as exc:
        print(f"taskfleet agent: {exc.message}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    try:
        agent = _agent(args)
    except TaskfleetError as exc:
        print(f"taskfleet agent: {exc.message}", file=sys.stderr)
        return 2

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, agent.stop)
        await agent.run()

    try:
        asyncio.run(run())
    except TaskfleetError as exc:
        print(f"taskfleet agent: {exc.message}", file=sys.stderr)
        return 2
    if agent.restart_requested:
        # R10: start afresh; the new process asks the NS for its task server again.
        args_now = sys.argv[1:] if argv is None else argv
        sys.stdout.flush()
        if args.token:  # (taken out of the environment while scripts ran)
            os.environ[enrolment_token.ENV] = args.token
        os.execv(sys.executable, [sys.executable, "-m", "taskfleet.agent", *args_now])
    return 0


def _agent(args: argparse.Namespace) -> Agent:
    return Agent(
        AgentOptions(
            ns_url=args.ns,
            state_dir=args.state_dir,
            token=args.token,
            name=args.name,
            addresses=args.address,
            startup_window_s=args.startup_window,
            channel_wait_s=args.channel_wait,
            ca_fingerprint=args.ca_fingerprint,
            insecure_http=args.insecure_http,
            facts_file=args.facts_file,
            power_test_file=args.power_test_file,
        )
    )
