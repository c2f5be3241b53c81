"""Child processes that raylens starts: spawned with a log file, polled until ready, stopped by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests


class StartError(RuntimeError):
    """A component did not come up; the message carries the tail of its log."""


@dataclass
class ManagedProcess:
    name: str
    argv: Sequence[str]
    log_path: Path
    ready_url: str | None = None
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            # A session of its own: Ctrl-C in the terminal reaches only `raylens up`, which then
            # stops each child in order instead of all dying at once.
            self.popen = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(self.env or {})},
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 30.0, auth: tuple[str, str] | None = None) -> None:
        if self.ready_url is None:
            return
        deadline = time.monotonic() + timeout
        last_error = ""
        while time.monotonic() < deadline:
            if self.popen is not None and self.popen.poll() is not None:
                raise StartError(f"{self.name} exited with code {self.popen.returncode}\n{self.log_tail()}")
            try:
                response = requests.get(self.ready_url, timeout=2, auth=auth, verify=False)
                if response.status_code == 200:
                    return
                last_error = f"HTTP {response.status_code}"
            except requests.RequestException as error:
                last_error = type(error).__name__
            time.sleep(0.1)
        waited = f"after {timeout:.0f}s ({last_error})"
        raise StartError(f"{self.name} not ready at {self.ready_url} {waited}\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"(no log at {self.log_path})"
        tail = text.splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "\n".join(tail)


def stop_pid(pid: int, expected_command: str, timeout: float = 15.0) -> bool:
    """Stop a process we started earlier, only if its command line still names what we started.

    PIDs are recycled; checking ``/proc/PID/cmdline`` keeps ``raylens down`` from signalling a
    stranger. Returns True when the process is gone.
    """
    if not is_ours(pid, expected_command):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    return not pid_alive(pid)


def is_ours(pid: int, expected_command: str) -> bool:
    """Whether ``pid`` is alive and its command line still names what we started (PIDs are recycled)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return expected_command in cmdline and pid_alive(pid)


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting for its parent."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
