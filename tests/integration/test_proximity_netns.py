"""R3 proximity with real addresses: two hosts on two subnets, each gets its own task server.

The test builds two network namespaces joined by a veth pair, one address each
on its own subnet, with an on-link route to the other subnet:

    netns A  10.231.X.2/24  <--veth-->  10.232.X.2/24  netns B
    NS, ts-a, agent pc-a                ts-b, agent pc-b

Every process runs inside a namespace (``ip netns exec``), so nothing listens
outside them; the namespaces and the veth pair are removed afterwards. The NS
uses SQLite: the PostgreSQL server on the host's loopback is not reachable from
inside the namespaces, and the assignment logic is the same on both (the R3
table tests and the end-to-end tests cover PostgreSQL).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from taskfleet.cli.launcher import Launcher, Proc, wait_until
from taskfleet.protocol import pki

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Host:
    netns: str
    address: str  # with its prefix, "10.231.7.2/24"

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]

    def subnet(self) -> str:
        return self.ip.rsplit(".", 1)[0] + ".0/24"


def netns_unusable() -> str | None:
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "creating network namespaces needs root; this test runs as a normal user"
    if shutil.which("ip") is None:
        return "the ip command (Debian package iproute2) is not installed"
    return None


@pytest.fixture
def hosts() -> Iterator[tuple[Host, Host]]:
    reason = netns_unusable()
    if reason:
        pytest.skip(reason)
    tag = os.getpid() % 100_000
    x = 20 + os.getpid() % 200
    a = Host(f"tf-a-{tag}", f"10.231.{x}.2/24")
    b = Host(f"tf-b-{tag}", f"10.232.{x}.2/24")
    created: list[str] = []
    try:
        for host in (a, b):
            ip("netns", "add", host.netns)
            created.append(host.netns)
        ip("link", "add", f"tfa{tag}", "netns", a.netns, "type", "veth",
           "peer", "name", f"tfb{tag}", "netns", b.netns)  # fmt: skip
        for host, dev, other in ((a, f"tfa{tag}", b), (b, f"tfb{tag}", a)):
            ip("-n", host.netns, "link", "set", "lo", "up")
            ip("-n", host.netns, "addr", "add", host.address, "dev", dev)
            ip("-n", host.netns, "link", "set", dev, "up")
            ip("-n", host.netns, "route", "add", other.subnet(), "dev", dev)
    except subprocess.CalledProcessError as exc:
        for name in created:
            subprocess.run(["ip", "netns", "del", name], check=False)
        pytest.skip(f"cannot build network namespaces here: {exc.stderr.strip()}")
    try:
        yield a, b
    finally:
        # Deleting a namespace removes the veth end inside it, and so the pair.
        for name in created:
            subprocess.run(["ip", "netns", "del", name], check=False)


class NetFleet:
    """taskfleet processes and admin commands, each inside a given namespace."""

    def __init__(self, root: Path, ns_host: Host) -> None:
        self.root = root
        self.launcher = Launcher(root / "logs")
        self.ns_host = ns_host
        self.ns_url = f"https://{ns_host.ip}:8400"  # TLS with the NS's own CA, as deployed

    def fingerprint(self) -> str:
        ca = (self.root / "ns" / "ca" / "ca.crt").read_bytes()
        return pki.fingerprint(x509.load_pem_x509_certificate(ca))

    def start(self, host: Host, name: str, *args: str) -> Proc:
        # ``ip netns exec`` execs the command, so the PID we stop is the process itself.
        return self.launcher.start(name, *args, prefix=["ip", "netns", "exec", host.netns])

    def admin(self, *args: str) -> Any:
        command = [
            "ip", "netns", "exec", self.ns_host.netns, sys.executable, "-m", "taskfleet",
            "--ns", self.ns_url, "--credential", str(self.root / "ns" / "admin.credential"),
            *args, "--json",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise AssertionError(f"taskfleet {' '.join(args)} failed: {done.stdout}{done.stderr}")
        return json.loads(done.stdout)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name} ---\n{p.read_text(errors='replace')[-1500:]}"
            for p in sorted((self.root / "logs").glob("*.log"))
        )


@pytest.fixture
def net_fleet(hosts: tuple[Host, Host], tmp_path: Path) -> Iterator[NetFleet]:
    fleet = NetFleet(tmp_path, hosts[0])
    try:
        yield fleet
    finally:
        fleet.launcher.stop_all()


def test_each_agent_gets_the_task_server_on_its_own_subnet(
    hosts: tuple[Host, Host], net_fleet: NetFleet
) -> None:
    a, b = hosts
    # Given an NS on host A, a task server on each subnet, both approved, and no policy
    db = f"sqlite:///{net_fleet.root}/ns.db"
    data_dir = str(net_fleet.root / "ns")
    ns = net_fleet.start(
        a, "ns", "ns", "serve", "--db", db, "--bind", f"{a.ip}:8400", "--data-dir", data_dir
    )
    wait_until(
        lambda: ns.alive() and (net_fleet.root / "ns" / "admin.credential").exists()
        and net_fleet.admin("taskserver", "list") is not None,
        60, f"the NS in {a.netns}\n{net_fleet.logs()}",
    )  # fmt: skip
    ts_token = net_fleet.admin("token", "create", "--kind", "taskserver")["token"]
    for host, name in ((a, "ts-a"), (b, "ts-b")):
        net_fleet.start(host, name, "taskserver", "serve", "--ns", net_fleet.ns_url,
                        "--bind", f"{host.ip}:8410", "--data-dir", str(net_fleet.root / name),
                        "--token", ts_token, "--name", name, "--heartbeat", "2",
                        "--ca-fingerprint", net_fleet.fingerprint())  # fmt: skip

    def registered() -> bool:
        return {"ts-a", "ts-b"} <= {row["name"] for row in net_fleet.admin("taskserver", "list")}

    wait_until(registered, 60, f"both task servers to register\n{net_fleet.logs()}")
    for name in ("ts-a", "ts-b"):
        net_fleet.admin("taskserver", "approve", name)

    def available() -> bool:
        rows = net_fleet.admin("taskserver", "list")
        return all(row["available"] for row in rows if row["name"] in ("ts-a", "ts-b"))

    wait_until(available, 30, "both task servers available")
    servers = {row["name"]: row for row in net_fleet.admin("taskserver", "list")}
    assert f"{a.ip}/24" in servers["ts-a"]["addresses"], servers["ts-a"]
    assert f"{b.ip}/24" in servers["ts-b"]["addresses"], servers["ts-b"]

    # When an agent starts on each host
    agent_token = net_fleet.admin("token", "create", "--kind", "agent")["token"]
    for host, name in ((a, "pc-a"), (b, "pc-b")):
        net_fleet.start(host, name, "agent", "run", "--ns", net_fleet.ns_url,
                        "--state-dir", str(net_fleet.root / name), "--token", agent_token,
                        "--name", name, "--startup-window", "0.5",
                        "--ca-fingerprint", net_fleet.fingerprint())  # fmt: skip

    def assigned() -> dict[str, dict[str, Any]] | None:
        rows = {name: net_fleet.admin("computer", "show", name) for name in ("pc-a", "pc-b")}
        return rows if all(row["assign_step"] for row in rows.values()) else None

    started = time.monotonic()
    rows = wait_until(assigned, 60, f"both agents assigned\n{net_fleet.logs()}")
    assert isinstance(rows, dict)

    # Then each agent reported its real address and got the task server of its own subnet
    for host, pc, ts in ((a, "pc-a", "ts-a"), (b, "pc-b", "ts-b")):
        row = rows[pc]
        assert f"{host.ip}/24" in row["addresses"], row
        assert row["task_server"] == ts, row
        assert row["assign_step"] == "subnet", row
        assert host.subnet() in row["assign_reason"], row
    assert time.monotonic() - started < 60

    # And a script reaches pc-b through ts-b, across the link between the hosts
    net_fleet.admin("task", "create", "where", "--script", "hostname; echo done")
    result = net_fleet.admin("run", "where", "--target", "pc-b", "--wait", "--timeout", "60")
    instance = result["instances"][0]
    assert instance["state"] == "Succeeded", result
    assert "done" in instance["output"], result
