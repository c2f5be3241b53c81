"""``raylens up`` / ``raylens down``: the local stack on loopback, each part in its own state folder.

``up`` starts, in order, a notification sink, Alertmanager with the shipped routing, a local Ray
head (or attaches to ``--ray-address``), the raylens exporter, Prometheus loaded with the bundle's
rules scraping both, and ``raylens remediate`` behind Alertmanager's remediation webhook (dry runs
unless ``--remediate``); on a fresh local head it submits the demo jobs. It records every PID
in ``<state>/stack.json`` and stops them all on Ctrl-C or SIGTERM. ``down`` stops what that file
names, by PID, and nothing else.
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
from typing import TYPE_CHECKING

import requests
import yaml

from raylens.config import KNOWN_COLLECTORS, AlertsConfig, RaylensConfig, load_config
from raylens.rules.budgets import budgets_for
from raylens.stack.alertmanager import alertmanager_argv, prepare_alertmanager_dir
from raylens.stack.demo import DEMO_BUDGET_THRESHOLD_FOR, LOCAL_NODE_LABELS, WORKER_PORT_RANGE, apply_demo_settings
from raylens.stack.demo_loop import DEFAULT_CYCLE_SECONDS, DemoLoop
from raylens.stack.ports import free_port
from raylens.stack.processes import ManagedProcess, StartError, is_ours, stop_pid
from raylens.stack.prometheus import prepare_prometheus_dir, prometheus_argv
from raylens.stack.remediate import remediation_process, webhook
from raylens.stack.tools import bundle_root, ensure_tools

if TYPE_CHECKING:
    from raylens.stack.ray_head import RayHead

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
    # The user's raylens.yaml: its alerts, cost and ray sections shape the stack.
    config_file: Path | None = None
    # Attach to this cluster instead of starting a local head (RAY_ADDRESS, GCS or dashboard URL).
    ray_address: str | None = None
    # Submit the sample jobs; default: only on a local head `up` started itself.
    demo: bool | None = None
    demo_duration_seconds: float = 0.0  # 0: resubmit until the stack stops
    demo_cycle_seconds: float = DEFAULT_CYCLE_SECONDS
    # `raylens remediate` on this port; its actions only run with `--remediate` (else dry runs).
    remediate_port: int = 9098
    remediate: bool = False
    # Shorter Alertmanager timers so demo alerts arrive in seconds, not after 30 s/5 m.
    alertmanager_group_wait: str | None = "2s"
    alertmanager_group_interval: str | None = "10s"


class RayHeadComponent:
    """Adapts a local ``RayHead`` to the start/stop/record shape of the other components."""

    name = "ray-head"

    def __init__(self, head: RayHead):
        self.head = head

    @property
    def pid(self) -> int | None:
        return self.head.process.pid if self.head.process else None

    @property
    def popen(self):  # the same attribute as ManagedProcess
        return self.head.process.popen if self.head.process else None

    def stop(self) -> None:
        self.head.stop()

    def log_tail(self, lines: int = 20) -> str:
        return self.head.process.log_tail(lines) if self.head.process else ""

    def record(self) -> dict[str, object]:
        return {"name": self.name, "pid": self.pid, "command": "ray", "temp_dir": str(self.head.temp_dir)}


class Stack:
    def __init__(self, options: StackOptions, say: Callable[[str], None] = say_now):
        self.options = options
        self.say = say
        self.processes: list[ManagedProcess | RayHeadComponent] = []
        self.urls: dict[str, str] = {}
        self.user_config = load_config(options.config_file)
        self.ray_dashboard_url: str | None = None
        self.ray_metrics_targets: list[str] = []
        self.exporter_config: RaylensConfig | None = None
        self._ports: dict[str, int] = {}
        self.demo_loop: DemoLoop | None = None

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
            ports = self._ports = self._pick_ports()
            self._step("start notification sink", lambda: self._start_sink(ports["sink"]))
            # Alertmanager first: Prometheus drops the first notification if it is not there yet.
            self._step(
                "start Alertmanager",
                lambda: self._start_alertmanager(
                    tools["prometheus-alertmanager"], ports["alertmanager"], ports["sink"]
                ),
            )
            if self.options.ray_address:
                self._step("find the Ray cluster", self._attach_ray)
            else:
                self._step("start a local Ray head", self._start_ray_head)
            self._step("start raylens exporter", lambda: self._start_exporter(ports["exporter"]))
            self._step("start Prometheus", lambda: self._start_prometheus(tools["prometheus"], ports))
            self._step("start remediation service", lambda: self._start_remediate(ports))
            if self._demo_enabled():
                self._step("submit demo jobs", self._submit_demo)
            self._step("wait for the first scrapes", self._wait_first_scrape)
        except BaseException:
            self.down()
            raise
        return self.urls

    def _demo_enabled(self) -> bool:
        return self.options.demo if self.options.demo is not None else not self.options.ray_address

    def _refuse_if_running(self) -> None:
        recorded = read_state(self.options.state_dir)
        # A stack.json left by a crash must not block `up` because its PIDs were reused since.
        if recorded and any(is_ours(part["pid"], part["command"]) for part in recorded["components"]):
            raise StartError(
                f"a stack from {self.options.state_dir} is already running; stop it with "
                f"`raylens down --state-dir {self.options.state_dir}`"
            )

    def _find_tools(self, tools: dict[str, str]) -> str:
        names = ["prometheus", "promtool", "prometheus-alertmanager", "amtool"]
        tools.update(ensure_tools(names, self.options.allow_install, say=self.say))
        return ", ".join(tools[name] for name in ("prometheus", "prometheus-alertmanager"))

    def _pick_ports(self) -> dict[str, int]:
        """The well-known ports when free, else any free ones outside Ray's worker range."""
        preferred = {
            "sink": self.options.sink_port,
            "alertmanager": self.options.alertmanager_port,
            "exporter": self.options.exporter_port,
            "prometheus": self.options.prometheus_port,
            "remediate": self.options.remediate_port,
        }
        taken: set[int] = set(WORKER_PORT_RANGE)
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
        config = prepare_alertmanager_dir(
            bundle_root(),
            state,
            f"127.0.0.1:{sink_port}",
            self.options.alertmanager_group_wait,
            self.options.alertmanager_group_interval,
            remediation=webhook(f"127.0.0.1:{self._ports['remediate']}", self.options.state_dir),
        )
        listen = f"127.0.0.1:{port}"
        argv = alertmanager_argv(binary, config, state / "data", listen)
        logs = self.options.state_dir / "logs"
        self._launch(ManagedProcess("alertmanager", argv, logs / "alertmanager.log", f"http://{listen}/-/ready"))
        self.urls["alertmanager"] = f"http://{listen}"
        return self.urls["alertmanager"]

    def _start_ray_head(self) -> str:
        from raylens.stack.ray_head import RayHead, short_temp_dir

        head = RayHead(
            temp_dir=short_temp_dir(),
            log_dir=self.options.state_dir / "logs",
            num_cpus=max(2, os.cpu_count() or 2),
            object_store_bytes=200_000_000,
            labels=dict(LOCAL_NODE_LABELS),
        )
        component = RayHeadComponent(head)
        self.processes.append(component)
        head.start(timeout=180)
        self._write_state()
        self.ray_dashboard_url = head.dashboard_url
        self.ray_metrics_targets = [
            head.metrics_address,
            f"127.0.0.1:{head.ports.autoscaler_metrics}",
            f"127.0.0.1:{head.ports.dashboard_metrics}",
        ]
        self.urls["ray-head"] = head.dashboard_url
        return f"dashboard {head.dashboard_url}, GCS {head.address}, temp dir {head.temp_dir}"

    def _attach_ray(self) -> str:
        from raylens.ray.address import dashboard_url_from_gcs, find_local_gcs_address, is_dashboard_url

        address = self.options.ray_address or "auto"
        if not is_dashboard_url(address):
            gcs = find_local_gcs_address(None) if address == "auto" else address
            address = dashboard_url_from_gcs(gcs, timeout=10)
        self.ray_dashboard_url = address.rstrip("/")
        self.ray_metrics_targets = []
        self.urls["ray"] = self.ray_dashboard_url
        return f"dashboard {self.ray_dashboard_url} (Ray's own metrics: add them with `raylens sd`)"

    def _exporter_config(self) -> Path:
        """The user's config, plus what this stack knows: collectors, the cluster, demo pricing."""
        data = self.user_config.model_dump(mode="json", exclude_none=True)
        collectors = ["node", "ray"]
        if "cost" in KNOWN_COLLECTORS:
            collectors.append("cost")
        if nvml_available():
            collectors.append("gpu")
        data["exporter"]["collectors"] = collectors
        data["ray"]["address"] = self.ray_dashboard_url
        if self._demo_enabled():
            data = apply_demo_settings(data, self.options.state_dir)
        path = self.options.state_dir / "raylens.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=True))
        # Fail here, naming the field, rather than in the exporter's log.
        self.exporter_config = load_config(path)
        return path

    def _launch(self, process: ManagedProcess) -> None:
        process.start()
        self.processes.append(process)
        self._write_state()
        process.wait_ready()

    def _start_exporter(self, port: int) -> str:
        listen = f"127.0.0.1:{port}"
        config = self._exporter_config()
        argv = [
            sys.executable,
            "-m",
            "raylens",
            "exporter",
            f"--web.listen-address={listen}",
            f"--config.file={config}",
        ]
        logs = self.options.state_dir / "logs"
        self._launch(ManagedProcess("exporter", argv, logs / "exporter.log", f"http://{listen}/healthz"))
        self.urls["exporter"] = f"http://{listen}/metrics"
        return f"{self.urls['exporter']} (config {config})"

    def _start_prometheus(self, binary: str, ports: dict[str, int]) -> str:
        state = self.options.state_dir
        config = prepare_prometheus_dir(
            bundle_root(),
            state / "prometheus",
            [f"127.0.0.1:{ports['exporter']}"],
            self.options.scrape_interval,
            alertmanager_targets=[f"127.0.0.1:{ports['alertmanager']}"],
            alerts_config=self._alerts_config(),
            ray_targets=self.ray_metrics_targets,
            # Budget threshold alerts for the budgets the exporter publishes (the demo's, or the user's).
            budgets=budgets_for(self.exporter_config.cost) if self.exporter_config else (),
        )
        listen = f"127.0.0.1:{ports['prometheus']}"
        argv = prometheus_argv(binary, config, state / "prometheus" / "data", listen)
        self._launch(ManagedProcess("prometheus", argv, state / "logs" / "prometheus.log", f"http://{listen}/-/ready"))
        self.urls["prometheus"] = f"http://{listen}"
        return f"{self.urls['prometheus']} (config {config})"

    def _start_remediate(self, ports: dict[str, int]) -> str:
        listen = f"127.0.0.1:{ports['remediate']}"
        act, state, exporter = self.options.remediate, self.options.state_dir, f"127.0.0.1:{ports['exporter']}"
        assert self.ray_dashboard_url is not None
        process = remediation_process(
            state, self.user_config, listen, self.urls, self.ray_dashboard_url, exporter, act, self._demo_enabled()
        )
        self._launch(process)
        self.urls["remediate"] = f"http://{listen}"
        return f"{self.urls['remediate']}/webhook, " + ("actions ON" if act else "dry run (actions with --remediate)")

    def _alerts_config(self) -> AlertsConfig:
        """The user's thresholds; the demo waits 30 s, not the production 5 m, before a budget alert."""
        alerts = self.user_config.alerts
        if self._demo_enabled() and "budget_threshold_for" not in alerts.model_fields_set:
            alerts = alerts.model_copy(update={"budget_threshold_for": DEMO_BUDGET_THRESHOLD_FOR})
        return alerts

    def _submit_demo(self) -> str:
        from raylens.stack.demo_loop import DemoLoop

        assert self.ray_dashboard_url is not None
        self.demo_loop = DemoLoop(
            self.ray_dashboard_url,
            self.options.state_dir,
            self.options.demo_cycle_seconds,
            self.options.demo_duration_seconds,
            say=self.say,
        )
        jobs = self.demo_loop.start()
        return f"{len(jobs)} jobs: {', '.join(jobs)}; resubmitted every {self.options.demo_cycle_seconds:.0f}s"

    def _wait_first_scrape(self, timeout: float = 90.0) -> str:
        query = f"{self.urls['prometheus']}/api/v1/query"
        jobs = ["raylens", "ray"] if self.ray_metrics_targets else ["raylens"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = requests.get(query, params={"query": "up"}, timeout=5).json()
            up = {(sample["metric"]["job"], sample["value"][1]) for sample in result.get("data", {}).get("result", [])}
            if all((job, "1") in up for job in jobs):
                count = requests.get(query, params={"query": 'count({__name__=~"raylens_.+"})'}, timeout=5).json()
                series = count["data"]["result"][0]["value"][1] if count["data"]["result"] else "0"
                return f"{series} raylens series in Prometheus; scraping {', '.join(jobs)}"
            time.sleep(0.5)
        exporter = next(process for process in self.processes if process.name == "exporter")
        raise StartError(f"Prometheus has not scraped {jobs} after {timeout:.0f}s\n{exporter.log_tail()}")

    def _write_state(self) -> None:
        components = [
            process.record()
            if isinstance(process, RayHeadComponent)
            else {
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
        if self.demo_loop is not None:
            self.demo_loop.stop()
            self.demo_loop = None
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


def nvml_available() -> bool:
    """Whether this host has an NVIDIA driver NVML can talk to (then the gpu collector is useful)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
    except Exception:
        return False
    return True


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
        if component.get("temp_dir"):
            # A Ray head: its daemons and workers are found by temp dir and marker, not one PID.
            from raylens.stack.ray_head import stop_cluster

            stop_cluster(Path(component["temp_dir"]), component["pid"])
            say(f"stopped {component['name']} (pid {component['pid']} and its processes)")
            continue
        if stop_pid(component["pid"], component["command"]):
            say(f"stopped {component['name']} (pid {component['pid']})")
        else:
            say(f"could not stop {component['name']} (pid {component['pid']})")
            failures += 1
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return failures
