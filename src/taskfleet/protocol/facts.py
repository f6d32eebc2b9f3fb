"""What a node says about itself: name, hardware id, addresses, OS, interpreters.

The ``Facts`` an agent sends when it enrols and a task server when it registers (both
wire-protocol messages), so it lives with the protocol rather than in either component.
The agent adds its inventory's built-in and custom facts on top (``agent.inventory``).
"""

from __future__ import annotations

import ipaddress
import platform
import shutil
import socket
import struct
import sys
import uuid
from pathlib import Path

from taskfleet import __version__
from taskfleet.protocol.messages import Facts

HARDWARE_ID_FILE = "hardware-id"
_SIOCGIFADDR = 0x8915
_SIOCGIFNETMASK = 0x891B


def hardware_id(state_dir: Path) -> str:
    """A stable id for this agent installation, kept in its state directory."""
    path = state_dir / HARDWARE_ID_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        state_dir.mkdir(parents=True, exist_ok=True)
        value = str(uuid.uuid4())
        path.write_text(value + "\n")
        return value


def addresses() -> list[str]:
    """IPv4 addresses with prefixes ("10.1.2.3/24"), loopback last.

    Read from the interfaces on Linux; best effort elsewhere.
    """
    found: list[str] = []
    if sys.platform.startswith("linux"):
        import fcntl

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _index, name in socket.if_nameindex():
                packed = struct.pack("256s", name.encode()[:15])
                try:
                    addr = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, packed)[20:24]
                    mask = fcntl.ioctl(sock.fileno(), _SIOCGIFNETMASK, packed)[20:24]
                except OSError:
                    continue
                ip = socket.inet_ntoa(addr)
                prefix = ipaddress.IPv4Network(f"0.0.0.0/{socket.inet_ntoa(mask)}").prefixlen
                found.append(f"{ip}/{prefix}")
    if not found:
        try:
            found.append(f"{socket.gethostbyname(socket.gethostname())}/32")
        except OSError:
            pass
    return sorted(found, key=lambda a: a.startswith("127."))


def interpreters() -> list[str]:
    out = [n for n in ("sh", "bash", "pwsh", "powershell", "cmd") if shutil.which(n)]
    out.append("python")  # the agent's own interpreter is always there
    return sorted(out)


def gather(name: str | None, hw_id: str, fixed_addresses: list[str] | None = None) -> Facts:
    return Facts(
        name=name or socket.gethostname(),
        hardware_id=hw_id,
        addresses=fixed_addresses if fixed_addresses else addresses(),
        os=f"{platform.system()} {platform.release()}".strip(),
        agent_version=__version__,
        interpreters=interpreters(),
        facts={"machine": platform.machine(), "python": platform.python_version()},
    )
