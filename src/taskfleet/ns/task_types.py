"""Checks of the copy-file, power-control and inventory tasks' params (``tasks.check_task``).

    copy-file      {"file": name, "sha256": hex, "size": bytes, "path": absolute path,
                    "mode": 0..0o7777, "owner": "" | "user" | "user:group"}
    power-control  {"action": "restart" | "shutdown" | "logoff", "delay_s": 0..86400,
                    "message": one line of text, at most 200 characters}
    inventory      {}

A copy-file task names its file by name at creation (``api_task_types``), which
resolves it to the stored SHA-256 and size: the agent verifies what it fetched
against those, so a file removed and uploaded again under the same name with other
content is never written by an older task.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from taskfleet.errors import InvalidInput
from taskfleet.ns.files import check_name, check_sha256
from taskfleet.protocol.messages import TaskType

MAX_PATH = 4096
MAX_DELAY_S = 86400
MAX_MESSAGE = 200
POWER_ACTIONS = ("restart", "shutdown", "logoff")
# Absolute on the target: POSIX "/...", or Windows "C:\..." / "C:/..." or "\\server\share\...".
_ABSOLUTE = re.compile(r"^(/|[A-Za-z]:[\\/]|\\\\[^\\]+\\)")
_OWNER = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.\-]{0,63}(:[A-Za-z0-9_.][A-Za-z0-9_.\-]{0,63})?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def copy_file(params: dict[str, Any]) -> dict[str, Any]:
    path = params.get("path")
    if not isinstance(path, str) or not path or len(path) > MAX_PATH or "\x00" in path:
        raise InvalidInput("path: give the target's absolute path", field="path")
    if not _ABSOLUTE.match(path) or path.endswith(("/", "\\")):
        raise InvalidInput(
            f"path {path!r} must be an absolute file path on the computer, e.g. "
            "/etc/motd or C:\\Tools\\tool.cfg",
            field="path",
        )
    mode = params.get("mode", 0o644)
    if isinstance(mode, str):
        try:
            mode = int(mode, 8)
        except ValueError:
            raise InvalidInput(f"mode {mode!r} is not octal, e.g. 0644", field="mode") from None
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
        raise InvalidInput("mode must be an octal file mode from 0000 to 7777", field="mode")
    owner = params.get("owner") or ""
    if not isinstance(owner, str) or (owner and not _OWNER.match(owner)):
        raise InvalidInput("owner is a user name, or user:group", field="owner")
    size = params.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidInput("size must be the file's size in bytes", field="size")
    return {
        "file": check_name(str(params.get("file", ""))),
        "sha256": check_sha256(str(params.get("sha256", ""))),
        "size": size,
        "path": path,
        "mode": mode,
        "owner": owner,
    }


def power_control(params: dict[str, Any]) -> dict[str, Any]:
    action = params.get("action")
    if action not in POWER_ACTIONS:
        raise InvalidInput(
            f"action {action!r} is not known; use one of {', '.join(POWER_ACTIONS)}",
            field="action",
        )
    delay = params.get("delay_s", 0)
    if isinstance(delay, float) and delay.is_integer():
        delay = int(delay)
    if isinstance(delay, bool) or not isinstance(delay, int) or not 0 <= delay <= MAX_DELAY_S:
        raise InvalidInput(
            f"delay_s must be whole seconds from 0 to {MAX_DELAY_S}", field="delay_s"
        )
    message = params.get("message") or ""
    if not isinstance(message, str) or len(message) > MAX_MESSAGE or _CONTROL.search(message):
        raise InvalidInput(
            f"message is one line of at most {MAX_MESSAGE} characters, without control characters",
            field="message",
        )
    return {"action": action, "delay_s": delay, "message": message}


def inventory(params: dict[str, Any]) -> dict[str, Any]:
    if params:
        raise InvalidInput(f"an inventory task takes no params (got {sorted(params)})")
    return {}


CHECKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    TaskType.COPY_FILE: copy_file,
    TaskType.POWER_CONTROL: power_control,
    TaskType.INVENTORY: inventory,
}
