"""Record what this machine's NVML answers as a fake-NVML fixture (format: ``raylens.gpu.fake_nvml``).

Run it on a GPU machine, then commit the file under ``tests/fixtures/nvml/`` with the card model in
its name; the fixture tests pick it up::

    python -m raylens.gpu.record tests/fixtures/nvml/h100-sxm-80gb-recorded.json

It asks every call the ``gpu`` collector makes, with the same arguments, and stores each answer or
NVML error. For the PIDs using a GPU it stores the process title and only the ``RAY_*`` environment
variables, so no secrets from other environments land in the repository. XID events are not recorded
(waiting for them would block); add an ``events`` list by hand to script a burst.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raylens.gpu.attribution import ProcessReader, procfs_reader
from raylens.gpu.device import decode_nvml_string, describe_error
from raylens.gpu.nvml_codes import ERROR_NAMES

# (symbol, enum arguments) for calls whose answer is a plain value or a list.
_SIMPLE_CALLS: tuple[tuple[str, tuple[tuple[int, ...], ...]], ...] = (
    ("nvmlDeviceGetPowerUsage", ()),
    ("nvmlDeviceGetEnforcedPowerLimit", ()),
    ("nvmlDeviceGetTotalEnergyConsumption", ()),
    ("nvmlDeviceGetTemperature", ((0,),)),
    ("nvmlDeviceGetClockInfo", ((0,), (1,), (2,))),
    ("nvmlDeviceGetFanSpeed", ()),
    ("nvmlDeviceGetPcieThroughput", ((0,), (1,))),
    ("nvmlDeviceGetPerformanceState", ()),
    ("nvmlDeviceGetCurrentClocksEventReasons", ()),
    ("nvmlDeviceGetCurrentClocksThrottleReasons", ()),
    ("nvmlDeviceGetSupportedClocksEventReasons", ()),
    ("nvmlDeviceGetSupportedClocksThrottleReasons", ()),
    ("nvmlDeviceGetEccMode", ()),
    ("nvmlDeviceGetTotalEccErrors", ((0, 0), (1, 0), (0, 1), (1, 1))),
    ("nvmlDeviceGetRemappedRows", ()),
    ("nvmlDeviceGetRetiredPages", ((0,), (1,))),
    ("nvmlDeviceGetRetiredPagesPendingStatus", ()),
    ("nvmlDeviceGetMigMode", ()),
    ("nvmlDeviceGetMaxMigDeviceCount", ()),
)
_PROCESS_CALLS = (
    "nvmlDeviceGetComputeRunningProcesses_v3",
    "nvmlDeviceGetComputeRunningProcesses_v2",
    "nvmlDeviceGetGraphicsRunningProcesses_v3",
    "nvmlDeviceGetGraphicsRunningProcesses_v2",
)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, bytes | str):
        return decode_nvml_string(value)
    return int(value) if isinstance(value, bool | int) else value


def _answer(nvml: Any, call: Callable[[], Any], convert: Callable[[Any], Any] = _plain) -> Any:
    try:
        return convert(call())
    except nvml.NVMLError as error:
        return {"error": ERROR_NAMES.get(error.value, f"NVML_ERROR_UNKNOWN_{error.value}")}


def _memory(info: Any) -> dict[str, int]:
    fields = ("version", "total", "reserved", "free", "used")
    return {name: int(getattr(info, name)) for name in fields if hasattr(info, name)}


def _processes(listing: Any) -> list[dict[str, Any]]:
    return [
        {
            "pid": int(process.pid),
            "usedGpuMemory": None if process.usedGpuMemory is None else int(process.usedGpuMemory),
            "gpuInstanceId": int(getattr(process, "gpuInstanceId", 0xFFFFFFFF)),
            "computeInstanceId": int(getattr(process, "computeInstanceId", 0xFFFFFFFF)),
        }
        for process in listing
    ]


def _record_calls(nvml: Any, handle: Any, calls: dict[str, Any], pids: set[int]) -> None:
    calls["nvmlDeviceGetUtilizationRates"] = _answer(
        nvml,
        lambda: nvml.nvmlDeviceGetUtilizationRates(handle),
        lambda rates: {"gpu": int(rates.gpu), "memory": int(rates.memory)},
    )
    calls["nvmlDeviceGetMemoryInfo"] = _answer(nvml, lambda: nvml.nvmlDeviceGetMemoryInfo(handle), _memory)
    calls["nvmlDeviceGetMemoryInfo_v2"] = _answer(
        nvml, lambda: nvml.nvmlDeviceGetMemoryInfo(handle, version=0x02000028), _memory
    )
    for symbol in _PROCESS_CALLS:
        answer = _answer(nvml, lambda symbol=symbol: getattr(nvml, symbol)(handle), _processes)
        calls[symbol] = answer
        if isinstance(answer, list):
            pids.update(entry["pid"] for entry in answer)


def _record_device_calls(nvml: Any, handle: Any, calls: dict[str, Any], pids: set[int]) -> None:
    _record_calls(nvml, handle, calls, pids)
    for symbol, argument_sets in _SIMPLE_CALLS:
        function = getattr(nvml, symbol)
        if not argument_sets:
            calls[symbol] = _answer(nvml, lambda function=function: function(handle))
        else:
            calls[symbol] = {
                ",".join(map(str, arguments)): _answer(
                    nvml, lambda function=function, arguments=arguments: function(handle, *arguments)
                )
                for arguments in argument_sets
            }


def record_fixture(nvml: Any, read_process: ProcessReader, description: str = "") -> dict[str, Any]:
    """Everything the collector would ask ``nvml``, as a fixture dictionary."""
    nvml.nvmlInit()
    try:
        fixture: dict[str, Any] = {
            "description": description or "Recorded with `python -m raylens.gpu.record`.",
            "source": "Recorded from the real driver.",
            "driver_version": decode_nvml_string(nvml.nvmlSystemGetDriverVersion()),
            "nvml_version": _answer(nvml, nvml.nvmlSystemGetNVMLVersion),
            "devices": [],
        }
        pids: set[int] = set()
        for index in range(nvml.nvmlDeviceGetCount()):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
            except nvml.NVMLError as error:
                fixture["devices"].append(
                    {"name": "", "uuid": "", "pci_bus_id": "", "handle_error": ERROR_NAMES.get(error.value)}
                )
                continue
            device: dict[str, Any] = {
                "name": decode_nvml_string(nvml.nvmlDeviceGetName(handle)),
                "uuid": decode_nvml_string(nvml.nvmlDeviceGetUUID(handle)),
                "pci_bus_id": decode_nvml_string(nvml.nvmlDeviceGetPciInfo(handle).busId),
                "calls": {},
            }
            _record_device_calls(nvml, handle, device["calls"], pids)
            mig_count = device["calls"].get("nvmlDeviceGetMaxMigDeviceCount")
            mig_mode = device["calls"].get("nvmlDeviceGetMigMode")
            if isinstance(mig_mode, list) and mig_mode[0] == 1 and isinstance(mig_count, int):
                device["mig_devices"] = []
                for slot in range(mig_count):
                    try:
                        mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
                    except nvml.NVMLError:
                        continue
                    entry = {
                        "slot": slot,
                        "name": decode_nvml_string(nvml.nvmlDeviceGetName(mig)),
                        "uuid": decode_nvml_string(nvml.nvmlDeviceGetUUID(mig)),
                        "gpu_instance_id": int(nvml.nvmlDeviceGetGpuInstanceId(mig)),
                        "compute_instance_id": int(nvml.nvmlDeviceGetComputeInstanceId(mig)),
                        "calls": {},
                    }
                    _record_calls(nvml, mig, entry["calls"], pids)
                    device["mig_devices"].append(entry)
            fixture["devices"].append(device)
        processes = {}
        for pid in sorted(pids):
            view = read_process(pid)
            if view is not None:
                environ = None
                if view.environ is not None:
                    environ = {key: value for key, value in view.environ.items() if key.startswith("RAY_")}
                processes[str(pid)] = {"cmdline": list(view.cmdline)[:1], "environ": environ}
        fixture["processes"] = processes
        return fixture
    finally:
        nvml.nvmlShutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="fixture file to write")
    parser.add_argument("--description", default="", help="what the recording shows")
    parser.add_argument("--proc-root", type=Path, default=Path("/proc"))
    args = parser.parse_args(argv)
    import pynvml

    try:
        fixture = record_fixture(pynvml, procfs_reader(args.proc_root), args.description)
    except pynvml.NVMLError as error:
        print(f"cannot record: NVML unavailable: {describe_error(error)}", file=sys.stderr)
        return 1
    args.output.write_text(json.dumps(fixture, indent=2) + "\n")
    models = sorted({device["name"] for device in fixture["devices"]})
    print(f"wrote {args.output}: {len(fixture['devices'])} GPU(s): {', '.join(models)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
