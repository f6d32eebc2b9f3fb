"""How each interpreter runs a script file: program, command line, file suffix, encoding.

The script is written to a temporary file and the interpreter is given its path.
What differs between them is how that file must look for the interpreter to read
it right:

- ``cmd`` (Windows): a ``.cmd`` batch file with CRLF line ends (cmd misreads labels
  and ``goto`` in LF-only files), UTF-8 after an ``@chcp 65001`` first line so
  non-ASCII text survives the console code page; run with ``/d`` (no AutoRun
  commands from the registry) ``/c``.
- ``powershell`` (Windows PowerShell 5.1, ``powershell.exe``): a ``.ps1`` file in
  UTF-8 *with* a byte-order mark (without one it reads the file in the ANSI code
  page), run with ``-ExecutionPolicy Bypass`` for this process only (the machine's
  policy would refuse an unsigned file) and ``-File``, so ``exit N`` is the exit code.
- ``pwsh`` (PowerShell 7, any OS): UTF-8 is its default; ``-File`` as above.
- ``sh``, ``bash``: the file as written; ``python``: the agent's own interpreter.

Pure functions over the table (``command_for``, ``script_bytes``): unit-tested on any
OS, since CI is Linux.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Interpreter:
    name: str
    program: str  # looked up on PATH (PATHEXT on Windows finds cmd.exe from "cmd")
    suffix: str
    encoding: str = "utf-8"
    crlf: bool = False
    prologue: str = ""
    arguments: tuple[str, ...] = ()  # before the script's path


_PWSH_ARGS = ("-NoProfile", "-NonInteractive")
TABLE = {
    i.name: i
    for i in (
        Interpreter("sh", "sh", ".sh"),
        Interpreter("bash", "bash", ".sh"),
        Interpreter("python", "python", ".py"),
        Interpreter("pwsh", "pwsh", ".ps1", arguments=(*_PWSH_ARGS, "-File")),
        Interpreter(
            "powershell",
            "powershell",
            ".ps1",
            encoding="utf-8-sig",
            crlf=True,
            arguments=(*_PWSH_ARGS, "-ExecutionPolicy", "Bypass", "-File"),
        ),
        Interpreter(
            "cmd", "cmd", ".cmd", crlf=True, prologue="@chcp 65001 >nul\n", arguments=("/d", "/c")
        ),
    )
}


def find(name: str) -> str | None:
    """The interpreter's program on this computer, or None when it has none."""
    if name == "python":
        return sys.executable
    known = TABLE.get(name)
    return shutil.which(known.program) if known else None


def command_for(name: str, exe: str, path: str) -> list[str]:
    """The command line that runs the script file ``path`` with program ``exe``."""
    return [exe, *TABLE[name].arguments, path]


def suffix(name: str) -> str:
    known = TABLE.get(name)
    return known.suffix if known else ""


def script_bytes(name: str, script: str) -> bytes:
    """The script file's contents as ``name`` reads them."""
    known = TABLE[name]
    text = known.prologue + script
    if known.crlf:
        text = text.replace("\r\n", "\n").replace("\n", "\r\n")
    return text.encode(known.encoding)
