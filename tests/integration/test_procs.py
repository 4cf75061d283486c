"""Children of the embedded mesh (ragmesh.procs): they die with their launcher, even when it
is killed, and they start cleanly from a launcher that holds a gRPC client (pymilvus) that
is reconnecting, which is what the mesh's supervisor does when it restarts Milvus Lite."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ragmesh.procs import Proc, free_port, wait_until
from tests.support.processes import alive

pytestmark = pytest.mark.integration

LAUNCHER = """
import sys, time
from pathlib import Path
from ragmesh.procs import Proc
child = Proc("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"],
             Path(sys.argv[1])).start()
print(child.pid, flush=True)
time.sleep(120)
"""


def test_a_child_dies_with_its_launcher_even_when_the_launcher_is_killed(tmp_path: Path):
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(tmp_path / "child.log")],
                                stdout=subprocess.PIPE, text=True,
                                cwd=Path(__file__).resolve().parents[2])
    assert launcher.stdout is not None
    child = int(launcher.stdout.readline())
    wait_until(lambda: "sleep(120)" in Path(f"/proc/{child}/cmdline").read_text(), 10,
               "the child to become its command")
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()
    wait_until(lambda: not alive(child), 10, "the child to die with its launcher")


def test_children_start_while_a_grpc_client_reconnects(tmp_path: Path):
    from pymilvus import MilvusClient

    port = free_port()
    milvus = Proc("milvus", [sys.executable, "-m", "milvus_lite", "server", "--data-dir",
                             str(tmp_path / "milvus.db"), "--host", "127.0.0.1", "--port",
                             str(port)], tmp_path / "milvus.log").start()

    def listening() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_until(listening, 60, "milvus lite", [milvus])
    client = MilvusClient(uri=f"http://127.0.0.1:{port}")
    stop = threading.Event()

    def keep_asking() -> None:
        while not stop.is_set():
            try:
                client.list_collections()
            except Exception:
                time.sleep(0.01)  # the server is gone: the client keeps reconnecting

    asker = threading.Thread(target=keep_asking, daemon=True)
    asker.start()
    milvus.kill()
    codes: list[int | None] = []

    def start_children() -> None:  # from a thread, as the supervisor does
        for n in range(60):
            child = Proc(f"c{n}", [sys.executable, "-c", "pass"], tmp_path / f"c{n}.log")
            child.start()
            assert child.popen is not None
            codes.append(child.popen.wait(30))

    try:
        starter = threading.Thread(target=start_children)
        starter.start()
        starter.join(300)
    finally:
        stop.set()
        asker.join(10)
        client.close()
    assert codes == [0] * 60
