"""Child processes of the embedded mesh: started with a log file, stopped cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Runs first in every child, then becomes the child's command (exec): the child gets SIGTERM
# if the launcher dies, even by SIGKILL (PR_SET_PDEATHSIG, Linux; it survives exec). Done here
# rather than in a preexec_fn: with one, Python runs its at-fork handlers in the forked child,
# and those of a gRPC client in the launcher (pymilvus) can abort the child before it starts
# ("epoll_wait error: Bad file descriptor"), seen when a restart raced a reconnecting client.
_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "try:\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
    "except (OSError, AttributeError):\n"
    "    pass\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)  # the launcher is already gone\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def with_parent(argv: Sequence[str]) -> list[str]:
    """`argv`, run so that it dies with this process (see _WITH_PARENT)."""
    return [sys.executable, "-S", "-c", _WITH_PARENT, str(os.getpid()), *argv]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path | str, lines: int = 30) -> str:
    """The last `lines` of a log, read from its end (an engine's log can be large)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Proc:
    """One child process whose output goes to `log_path`."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def start(self) -> Proc:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                with_parent(self.argv), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env={**os.environ, **self.env}, cwd=self.cwd,
                start_new_session=True,  # Ctrl-C reaches the launcher only; it stops us in order
            )
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(5)

    def failure(self) -> str:
        code = self.popen.returncode if self.popen else None
        return f"{self.name} exited with {code}; last lines of {self.log_path}:\n" \
               f"{log_tail(self.log_path)}"


def wait_until(check: Callable[[], bool], timeout: float, what: str,
               procs: Sequence[Proc] = (), interval: float = 0.25) -> None:
    """Poll `check` until true; fail early with the log of a process that died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if not proc.alive():
                raise RuntimeError(f"{what}: {proc.failure()}")
        try:
            if check():
                return
        except Exception:  # not up yet
            pass
        time.sleep(interval)
    raise TimeoutError(f"{what}: not ready after {timeout:.0f} s")
