"""Secret parameter values at rest: encrypted with a key the database never sees.

The key is ``<data_dir>/ca/secrets.key`` (0600), made on the NS's first start beside
the CA's key: NS replicas sharing one PostgreSQL share it by the same copy of the
``ca`` directory (docs/security.md), and a replica holding another key says so
rather than deliver garbage. Fernet (AES-128-CBC + HMAC-SHA256, from
``cryptography``) authenticates as well as encrypts, so a value changed in the
database is refused, not decrypted into something else.

Values are decrypted only into what is delivered to the target agent (``ns.runs``);
the API, console and audit log show ``templates.SECRET_MASK``.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from taskfleet.errors import TaskfleetError

KEY_FILE = "secrets.key"


class SecretBox:
    def __init__(self, key: bytes, path: Path | None = None) -> None:
        self._fernet = Fernet(key)
        self.path = path

    @classmethod
    def load_or_create(cls, directory: Path) -> SecretBox:
        """The key in ``directory``, made once; two processes starting together agree
        on one (the file is created exclusively, and the loser reads the winner's)."""
        path = directory / KEY_FILE
        directory.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls(path.read_bytes().strip(), path)
        key = Fernet.generate_key()
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
            fh.flush()
            os.fsync(fh.fileno())
        return cls(key, path)

    @classmethod
    def ephemeral(cls) -> SecretBox:
        """A key held in memory only (tests that build an NSState by hand)."""
        return cls(Fernet.generate_key())

    def seal(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode("ascii")

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeError) as exc:
            where = f" ({self.path})" if self.path else ""
            raise TaskfleetError(
                "a secret parameter cannot be decrypted with this NS's key"
                f"{where}: every NS replica needs the same <data-dir>/ca/{KEY_FILE}"
            ) from exc
