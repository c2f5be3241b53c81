"""``raylens up`` / ``raylens down``: the local stack on loopback, each part in its own state folder.

``up`` starts the exporter, then Prometheus loaded with the bundle's rules scraping it, records every
PID in ``<state>/stack.json``, and stops them all on Ctrl-C or SIGTERM. ``down`` stops what that
file names, by PID, and nothing else.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from raylens.stack.alertmanager import alertmanager_argv, prepare_alertmanager_dir
from raylens.stack.ports import free_port
from raylens.stack.processes import ManagedProcess, StartError, stop_pid
from raylens.stack.prometheus import prepare_prometheus_dir, prometheus_argv
from raylens.stack.tools import bundle_root, ensure_tools

STATE_FILE = "stack.json"


def say_now(message: str) -> None:
    # Progress must reach a pipe (CI logs, `| tee`) as it happens, not when the buffer fills.
    print(message, flush=True)


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "raylens"


@dataclass
class StackOptions:
    state_dir: Path = field(default_factory=default_state_dir)
    allow_install: bool = True
    scrape_interval: str = "5s"
    exporter_port: int = 9965
    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    sink_port: int = 9097
    collectors: str = "node"


class Stack:
    def __init__(self, options: StackOptions, say: Callable[[str], None] = say_now):
        self.options = options
        self.say = say
        self.processes: list[ManagedProcess] = []
        self.urls: dict[str, str] = {}

    def _step(self, title: str, action: Callable[[], str | None]) -> None:
        started = time.monotonic()
        self.say(f"[....] {title}")
        detail = action()
        if self.processes:
            self._write_state()  # record URLs as they become known
        elapsed = time.monotonic() - started
        self.say(f"[ ok ] {title} ({elapsed:.1f}s){': ' + detail if detail else ''}")

    def up(self) -> dict[str, str]:
        """Start everything or, if a step fails, stop what was started and raise ``StartError``."""
        state = self.options.state_dir
        state.mkdir(parents=True, exist_ok=True)
        self._refuse_if_running()
        try:
            tools: dict[str, str] = {}
            self._step("find Prometheus and Alertmanager", lambda: self._find_tools(tools))
            ports = self._pick_ports()
            self._step("start notification sink", lambda: self._start_sink(ports["sink"]))
            # Alertmanager first: Prometheus drops the first notification if it is not there yet.
            self._step(
                "start Alertmanager",
                lambda: self._start_alertmanager(
                    tools["prometheus-alertmanager"], ports["alertmanager"], ports["sink"]
                ),
            )
            self._step("start raylens exporter", lambda: self._start_exporter(ports["exporter"]))
            self._step("start Prometheus", lambda: self._start_prometheus(tools["prometheus"], ports))
            self._step("wait for the first scrape", self._wait_first_scrape)
        except BaseException:
            self.down()
            raise
        return self.urls

    def _refuse_if_running(self) -> None:
        recorded = read_state(self.options.state_dir)
        if recorded and any(Path(f"/proc/{part['pid']}").exists() for part in recorded["components"]):
            raise StartError(
                f"a stack from {self.options.state_dir} is already running; stop it with "
                f"`raylens down --state-dir {self.options.state_dir}`"
            )

    def _find_tools(self, tools: dict[str, str]) -> str:
        names = ["prometheus", "promtool", "prometheus-alertmanager", "amtool"]
        tools.update(ensure_tools(names, self.options.allow_install, say=self.say))
        return ", ".join(tools[name] for name in ("prometheus", "prometheus-alertmanager"))

    def _pick_ports(self) -> dict[str, int]:
        """The well-known ports when free, else any free ones; never the same twice."""
        preferred = {
            "sink": self.options.sink_port,
            "alertmanager": self.options.alertmanager_port,
            "exporter": self.options.exporter_port,
            "prometheus": self.options.prometheus_port,
        }
        taken: set[int] = set()
        ports = {}
        for name, port in preferred.items():
            ports[name] = free_port(port, taken=taken)
            taken.add(ports[name])
        return ports

    def _start_sink(self, port: int) -> str:
        listen = f"127.0.0.1:{port}"
        log = self.options.state_dir / "alertmanager" / "notifications.jsonl"
        argv = [sys.executable, "-m", "raylens.stack.sink", f"--listen={listen}", f"--log={log}"]
        logs = self.options.state_dir / "logs"
        self._launch(ManagedProcess("sink", argv, logs / "sink.log", f"http://{listen}/healthz"))
        self.urls["sink"] = str(log)  # what users read: the notifications file
        return f"notifications are written to {log}"

    def _start_alertmanager(self, binary: str, port: int, sink_port: int) -> str:
        state = self.options.state_dir / "alertmanager"
        config = prepare_alertmanager_dir(bundle_root(), state, f"127.0.0.1:{sink_port}")
        listen = f"127.0.0.1:{port}"
        argv = alertmanager_argv(binary, config, state / "data", listen)
        logs = self.options.state_dir / "logs"
        self._launch(ManagedProcess("alertmanager", argv, logs / "alertmanager.log", f"http://{listen}/-/ready"))
        self.urls["alertmanager"] = f"http://{listen}"
        return self.urls["alertmanager"]

    def _launch(self, process: ManagedProcess) -> None:
        process.start()
        self.processes.append(process)
        self._write_state()
        process.wait_ready()

    def _start_exporter(self, port: int) -> str:
        listen = f"127.0.0.1:{port}"
        argv = [
            sys.executable,
            "-m",
            "raylens",
            "exporter",
            f"--web.listen-address={listen}",
            f"--collectors={self.options.collectors}",
        ]
        logs = self.options.state_dir / "logs"
        self._launch(ManagedProcess("exporter", argv, logs / "exporter.log", f"http://{listen}/healthz"))
        self.urls["exporter"] = f"http://{listen}/metrics"
        return self.urls["exporter"]

    def _start_prometheus(self, binary: str, ports: dict[str, int]) -> str:
        state = self.options.state_dir
        config = prepare_prometheus_dir(
            bundle_root(),
            state / "prometheus",
            [f"127.0.0.1:{ports['exporter']}"],
            self.options.scrape_interval,
            alertmanager_targets=[f"127.0.0.1:{ports['alertmanager']}"],
        )
        listen = f"127.0.0.1:{ports['prometheus']}"
        argv = prometheus_argv(binary, config, state / "prometheus" / "data", listen)
        self._launch(ManagedProcess("prometheus", argv, state / "logs" / "prometheus.log", f"http://{listen}/-/ready"))
        self.urls["prometheus"] = f"http://{listen}"
        return f"{self.urls['prometheus']} (config {config})"

    def _wait_first_scrape(self, timeout: float = 60.0) -> str:
        query = f"{self.urls['prometheus']}/api/v1/query"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = requests.get(query, params={"query": 'up{job="raylens"}'}, timeout=5).json()
            samples = result.get("data", {}).get("result", [])
            if samples and all(sample["value"][1] == "1" for sample in samples):
                count = requests.get(query, params={"query": 'count({__name__=~"raylens_.+"})'}, timeout=5).json()
                series = count["data"]["result"][0]["value"][1] if count["data"]["result"] else "0"
                return f"{series} raylens series in Prometheus"
            time.sleep(0.5)
        raise StartError(
            f"Prometheus has not scraped the exporter after {timeout:.0f}s\n{self.processes[0].log_tail()}"
        )

    def _write_state(self) -> None:
        components = [
            {
                "name": process.name,
                "pid": process.pid,
                # What /proc/PID/cmdline must contain for `down` to trust the PID is still ours.
                "command": "raylens" if process.argv[0] == sys.executable else process.argv[0],
            }
            for process in self.processes
        ]
        state = {"supervisor_pid": os.getpid(), "components": components, "urls": self.urls}
        (self.options.state_dir / STATE_FILE).write_text(json.dumps(state, indent=2))

    def down(self) -> None:
        for process in reversed(self.processes):
            self.say(f"stopping {process.name} (pid {process.pid})")
            process.stop()
        self.processes.clear()
        (self.options.state_dir / STATE_FILE).unlink(missing_ok=True)

    def serve_until_stopped(self) -> None:
        """Block until SIGINT/SIGTERM or until a component dies (then say which, with its log)."""
        stop = threading.Event()

        def request_stop(_signum: int, _frame: object) -> None:
            stop.set()

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        self.say("Press Ctrl-C to stop (or run `raylens down`).")
        while not stop.wait(1.0):
            for process in self.processes:
                if process.popen is not None and process.popen.poll() is not None:
                    self.say(f"{process.name} exited with code {process.popen.returncode}\n{process.log_tail()}")
                    stop.set()


def read_state(state_dir: Path) -> dict | None:
    try:
        return json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def stop_recorded(state_dir: Path, say: Callable[[str], None] = say_now) -> int:
    """Stop the processes a previous ``up`` recorded; return how many could not be stopped."""
    state = read_state(state_dir)
    if state is None:
        say(f"nothing recorded in {state_dir / STATE_FILE}; nothing to stop")
        return 0
    failures = 0
    supervisor = state.get("supervisor_pid")
    # Stop the supervising `raylens up` first so it does not report its children's exits as failures.
    if supervisor and supervisor != os.getpid():
        stop_pid(supervisor, "raylens")
    for component in reversed(state["components"]):
        if stop_pid(component["pid"], component["command"]):
            say(f"stopped {component['name']} (pid {component['pid']})")
        else:
            say(f"could not stop {component['name']} (pid {component['pid']})")
            failures += 1
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return failures
