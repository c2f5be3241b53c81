"""The fake NVML is a faithful stand-in for ``pynvml``, and the recorder writes fixtures it can replay."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
import sys
from pathlib import Path

import pynvml
import pytest
from prometheus_client import CollectorRegistry, generate_latest

import raylens.gpu
from raylens.collectors import gpu as gpu_collector
from raylens.collectors.base import ScrapeHealthCollector
from raylens.collectors.gpu import ERROR_NAMES, GpuCollector
from raylens.config import GpuConfig
from raylens.gpu.attribution import ProcAttributor
from raylens.gpu.fake_nvml import ERROR_CODES, FakeNvml, NVMLError, load_fake_nvml
from raylens.gpu.record import record_fixture

FIXTURES = Path(__file__).parent / "fixtures" / "nvml"
FAKE_FUNCTIONS = sorted(
    name for name, member in inspect.getmembers(FakeNvml, inspect.isfunction) if name.startswith("nvml")
)
FAKE_CONSTANTS = sorted(
    name
    for name, value in vars(FakeNvml).items()
    if (name.startswith("NVML_") or name.startswith("nvmlEventType") or name == "nvmlMemory_v2")
    and isinstance(value, int)
)


@pytest.mark.parametrize("name", FAKE_FUNCTIONS)
def test_fake_function_has_pynvmls_name_and_parameters(name: str) -> None:
    real = getattr(pynvml, name, None)
    assert real is not None, f"pynvml has no {name}"
    fake_parameters = list(inspect.signature(getattr(FakeNvml, name)).parameters)[1:]  # drop self
    assert fake_parameters == list(inspect.signature(real).parameters)


@pytest.mark.parametrize("name", FAKE_CONSTANTS)
def test_fake_constants_have_pynvmls_values(name: str) -> None:
    assert getattr(FakeNvml, name) == getattr(pynvml, name)


def test_error_codes_and_classes_match_pynvml() -> None:
    for name, code in ERROR_CODES.items():
        assert getattr(pynvml, name) == code
        assert ERROR_NAMES[code] == name
    lost = NVMLError(15)
    assert type(lost).__name__ == "NVMLError_GpuIsLost" == type(pynvml.NVMLError(15)).__name__
    assert lost.value == 15 and str(lost) == str(pynvml.NVMLError(15)) == "GPU is lost"
    assert isinstance(lost, NVMLError)
    assert str(NVMLError(12)) == "NVML Shared Library Not Found"


def test_collector_calls_only_what_the_fake_provides() -> None:
    """Every pynvml function the collector names exists on the fake (and hence, by the test above,
    in pynvml with the same parameters). The collector's parts live in ``raylens.gpu``; the fake and
    the recorder there are not the collector."""
    parts = [
        importlib.import_module(f"raylens.gpu.{module.name}")
        for module in pkgutil.iter_modules(raylens.gpu.__path__)
        if module.name not in ("fake_nvml", "record")
    ]
    source = "".join(inspect.getsource(module) for module in (gpu_collector, *parts))
    called = set(re.findall(r"\bnvml\.(nvml\w+)", source))
    # One call from each section and from start-up: the scan reaches every part.
    assert {"nvmlInit", "nvmlDeviceGetPowerUsage", "nvmlDeviceGetComputeRunningProcesses_v3"} <= called
    assert "nvmlEventSetWait_v2" in called
    assert called - set(FAKE_FUNCTIONS) == set()


def test_fake_behaves_like_nvml_before_init_and_for_unrecorded_calls() -> None:
    nvml = load_fake_nvml(FIXTURES / "t4.json")
    with pytest.raises(NVMLError) as uninitialised:
        nvml.nvmlDeviceGetCount()
    assert uninitialised.value.value == 1
    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    assert nvml.nvmlDeviceGetPciInfo(handle).busId == b"00000000:00:1E.0"  # bytes, as ctypes returns
    assert nvml.nvmlDeviceGetUUID(handle).startswith("GPU-")
    with pytest.raises(NVMLError) as unsupported:
        nvml.nvmlDeviceGetFanSpeed(handle)
    assert unsupported.value.value == 3
    event_set = nvml.nvmlEventSetCreate()
    nvml.nvmlDeviceRegisterEvents(handle, nvml.nvmlEventTypeXidCriticalError, event_set)
    with pytest.raises(NVMLError) as timeout:
        nvml.nvmlEventSetWait_v2(event_set, 0)
    assert timeout.value.value == 10
    nvml.emit_xid(0, 79)
    event = nvml.nvmlEventSetWait_v2(event_set, 0)
    assert (event.eventType, event.eventData) == (8, 79)


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda path: path.stem)
def test_fixture_names_only_known_calls_and_errors(path: Path) -> None:
    data = json.loads(path.read_text())
    assert data["description"] and data["source"]
    known = set(FAKE_FUNCTIONS) | {
        "nvmlDeviceGetMemoryInfo_v2",
        "nvmlDeviceGetComputeRunningProcesses",
        "nvmlDeviceGetGraphicsRunningProcesses",
    }

    def errors_in(value: object) -> list[str]:
        if isinstance(value, dict):
            found = [value["error"]] if set(value) == {"error"} else []
            return found + [error for item in value.values() for error in errors_in(item)]
        if isinstance(value, list):
            return [error for item in value for error in errors_in(item)]
        return []

    for device in data.get("devices", []):
        for calls in [device.get("calls", {})] + [mig["calls"] for mig in device.get("mig_devices", [])]:
            assert set(calls) <= known, set(calls) - known
            assert set(errors_in(calls)) <= set(ERROR_CODES)


def exposition(nvml: FakeNvml) -> str:
    registry = CollectorRegistry(auto_describe=False)
    attribute = ProcAttributor(nvml.process_reader())
    registry.register(ScrapeHealthCollector([GpuCollector(GpuConfig(), nvml=nvml, attribute=attribute)]))
    return "\n".join(
        line
        for line in generate_latest(registry).decode().splitlines()
        if not line.startswith("raylens_scrape_collector_duration_seconds{")
    )


@pytest.mark.parametrize(
    "name",
    [path.stem for path in sorted(FIXTURES.glob("*.json")) if path.stem not in ("no-nvml-library", "no-gpu")],
)
def test_recorder_captures_everything_the_collector_reads(name: str) -> None:
    """Recording a fake card and replaying the recording gives the same exposition, so a recording
    of a real card captures every answer the collector needs."""
    original = json.loads((FIXTURES / f"{name}.json").read_text())
    for device in original["devices"]:
        device.pop("events", None)  # events are not recorded
    source = FakeNvml(original)
    recorded = record_fixture(source, source.process_reader(), "round trip")
    assert recorded["devices"] and source.initialised == 0  # the recorder shuts NVML down again
    json.dumps(recorded)  # plain JSON
    assert exposition(FakeNvml(recorded)) == exposition(FakeNvml(original))
    for entry in recorded["processes"].values():
        assert entry["environ"] is None or all(key.startswith("RAY_") for key in entry["environ"])


def test_record_command_writes_a_fixture_the_fake_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from raylens.gpu.record import main

    monkeypatch.setitem(sys.modules, "pynvml", load_fake_nvml(FIXTURES / "a10g.json"))
    output = tmp_path / "a10g-recorded.json"
    assert main([str(output), "--description", "g5.2xlarge", "--proc-root", str(tmp_path)]) == 0
    assert "1 GPU(s): NVIDIA A10G" in capsys.readouterr().err
    replay = load_fake_nvml(output)
    assert replay.fixture["description"] == "g5.2xlarge"
    assert 'model_name="NVIDIA A10G"' in exposition(replay)


def test_record_command_without_nvml_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from raylens.gpu.record import main

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this host has a working NVML; the command would record it")
    assert main([str(tmp_path / "x.json")]) == 1
    assert "cannot record: NVML unavailable: NVML_ERROR_" in capsys.readouterr().err
