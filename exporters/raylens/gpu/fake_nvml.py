"""A stand-in for the ``pynvml`` module (nvidia-ml-py), driven by a JSON fixture; tests and demos only.

It is injected at the lowest layer: the ``gpu`` collector calls it exactly as it calls ``pynvml``, with
the same function names, signatures, return shapes (``busId`` as bytes, ``usedGpuMemory`` None when
NVML cannot tell, event data with ``.eventData`` holding the XID) and ``NVMLError`` subclasses carrying
``.value`` codes. ``tests/test_gpu_fake_nvml.py`` checks every name and signature against the real
module. The exporter uses it only when ``RAYLENS_FAKE_NVML=<fixture path>`` is set (docs/gpu.md).

Fixture format, one JSON object per scenario (``tests/fixtures/nvml/*.json``)::

    {
      "description": "what the scenario shows",
      "source": "where the readings come from",
      "driver_version": "550.90.07",          # nvmlSystemGetDriverVersion
      "nvml_version": "12.550.90.07",         # nvmlSystemGetNVMLVersion
      "init_error": "NVML_ERROR_LIBRARY_NOT_FOUND",   # optional: nvmlInit fails with it
      "devices": [{
        "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-…", "pci_bus_id": "00000000:18:00.0",
        "handle_error": "NVML_ERROR_GPU_IS_LOST",     # optional: nvmlDeviceGetHandleByIndex fails
        "lost": false,                                # optional: every call on the handle fails so
        "calls": {"nvmlDeviceGetPowerUsage": 645123, "nvmlDeviceGetClockInfo": {"1": 1980}, …},
        "mig_devices": [{"slot": 0, "name": "… MIG 3g.40gb", "uuid": "MIG-…",
                         "gpu_instance_id": 2, "compute_instance_id": 0, "calls": {…}}],
        "events": [{"eventType": 8, "eventData": 79}]   # queued once XID events are registered
      }],
      "processes": {"48213": {"cmdline": ["ray::LLMServer"], "environ": {"RAY_JOB_ID": "02000000"}}}
    }

``calls`` is keyed by the NVML C symbol each ``pynvml`` function calls (``nvmlDeviceGetMemoryInfo``
for ``version=None``, ``nvmlDeviceGetMemoryInfo_v2`` for ``version=nvmlMemory_v2``). An answer is the
value in NVML's own units (mW, mJ, MHz, bytes, percent, KB/s), or ``{"error": "NVML_ERROR_…"}``.
Calls that take an enum argument map its value, as a string, to the answer
(``nvmlDeviceGetTotalEccErrors`` keys are ``"errorType,counterType"``). A call the fixture does not
record answers ``NVML_ERROR_NOT_SUPPORTED``, as NVML does for a feature the card lacks.
``processes`` is a fake ``/proc`` for the PIDs the fixture's GPUs report (``environ`` null:
unreadable).
"""

from __future__ import annotations

import copy
import json
import string
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

from raylens.gpu.attribution import ProcessReader, ProcessView

# NVML's return codes (nvml.h; the same values as pynvml's NVML_ERROR_* constants).
ERROR_CODES: Mapping[str, int] = {
    "NVML_ERROR_UNINITIALIZED": 1,
    "NVML_ERROR_INVALID_ARGUMENT": 2,
    "NVML_ERROR_NOT_SUPPORTED": 3,
    "NVML_ERROR_NO_PERMISSION": 4,
    "NVML_ERROR_ALREADY_INITIALIZED": 5,
    "NVML_ERROR_NOT_FOUND": 6,
    "NVML_ERROR_INSUFFICIENT_SIZE": 7,
    "NVML_ERROR_INSUFFICIENT_POWER": 8,
    "NVML_ERROR_DRIVER_NOT_LOADED": 9,
    "NVML_ERROR_TIMEOUT": 10,
    "NVML_ERROR_IRQ_ISSUE": 11,
    "NVML_ERROR_LIBRARY_NOT_FOUND": 12,
    "NVML_ERROR_FUNCTION_NOT_FOUND": 13,
    "NVML_ERROR_CORRUPTED_INFOROM": 14,
    "NVML_ERROR_GPU_IS_LOST": 15,
    "NVML_ERROR_RESET_REQUIRED": 16,
    "NVML_ERROR_OPERATING_SYSTEM": 17,
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH": 18,
    "NVML_ERROR_IN_USE": 19,
    "NVML_ERROR_MEMORY": 20,
    "NVML_ERROR_NO_DATA": 21,
    "NVML_ERROR_VGPU_ECC_NOT_SUPPORTED": 22,
    "NVML_ERROR_INSUFFICIENT_RESOURCES": 23,
    "NVML_ERROR_FREQ_NOT_SUPPORTED": 24,
    "NVML_ERROR_ARGUMENT_VERSION_MISMATCH": 25,
    "NVML_ERROR_DEPRECATED": 26,
    "NVML_ERROR_NOT_READY": 27,
    "NVML_ERROR_GPU_NOT_FOUND": 28,
    "NVML_ERROR_INVALID_STATE": 29,
    "NVML_ERROR_RESET_TYPE_NOT_SUPPORTED": 30,
    "NVML_ERROR_UNKNOWN": 999,
}
_MESSAGES = {
    1: "Uninitialized",
    2: "Invalid Argument",
    3: "Not Supported",
    4: "Insufficient Permissions",
    5: "Already Initialized",
    6: "Not Found",
    7: "Insufficient Size",
    8: "Insufficient External Power",
    9: "Driver Not Loaded",
    10: "Timeout",
    11: "Interrupt Request Issue",
    12: "NVML Shared Library Not Found",
    13: "Function Not Found",
    14: "Corrupted infoROM",
    15: "GPU is lost",
    16: "GPU requires restart",
    17: "The operating system has blocked the request.",
    18: "RM has detected an NVML/RM version mismatch.",
    20: "Insufficient Memory",
    999: "Unknown Error",
}


class NVMLError(Exception):
    """Like ``pynvml.NVMLError``: ``NVMLError(code)`` builds the subclass for the code
    (``NVMLError_GpuIsLost`` for 15) and ``.value`` holds the code."""

    _value_class: ClassVar[dict[int, type[NVMLError]]] = {}
    value: int

    def __new__(cls, value: int) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._value_class.get(value, cls)
        error = Exception.__new__(cls)
        error.value = value
        return error

    def __init__(self, value: int) -> None:
        super().__init__(value)

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML Error with code {self.value}")


def _error_class_name(constant: str) -> str:
    # pynvml's own rule (_extractNVMLErrorsAsClasses): NVML_ERROR_GPU_IS_LOST -> NVMLError_GpuIsLost
    return "NVMLError_" + string.capwords(constant.replace("NVML_ERROR_", ""), "_").replace("_", "")


ERROR_CLASSES: dict[str, type[NVMLError]] = {}
for _constant, _code in ERROR_CODES.items():
    _class = type(_error_class_name(_constant), (NVMLError,), {})
    NVMLError._value_class[_code] = _class
    ERROR_CLASSES[_class.__name__] = _class


def error_code(name: str) -> int:
    try:
        return ERROR_CODES[name]
    except KeyError:
        raise ValueError(f"unknown NVML error {name!r}; expected one of {sorted(ERROR_CODES)}") from None


@dataclass(eq=False)
class FakeHandle:
    """An opaque device handle, as ``c_nvmlDevice_t`` is; identity is all callers may use."""

    device: _Device
    mig: _MigDevice | None = None


@dataclass(eq=False)
class FakeEventSet:
    devices: list[_Device] = field(default_factory=list)
    freed: bool = False


@dataclass(eq=False)
class _MigDevice:
    data: dict[str, Any]

    @property
    def calls(self) -> dict[str, Any]:
        return self.data.setdefault("calls", {})


@dataclass(eq=False)
class _Device:
    index: int
    data: dict[str, Any]
    pending_events: list[dict[str, Any]] = field(default_factory=list)
    events_queued: bool = False

    @property
    def calls(self) -> dict[str, Any]:
        return self.data.setdefault("calls", {})

    @property
    def mig_devices(self) -> dict[int, _MigDevice]:
        return {int(mig["slot"]): _MigDevice(mig) for mig in self.data.get("mig_devices", [])}


def _raise(name: str) -> None:
    raise NVMLError(error_code(name))


def _answer(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"error"}:
        _raise(value["error"])
    return value


class FakeNvml:
    """The fake module. Constants and functions below mirror ``pynvml``; the methods after
    ``# Test controls`` are not in ``pynvml`` and let a test change the machine mid-run."""

    NVMLError = NVMLError

    NVML_SUCCESS = 0
    NVML_FEATURE_DISABLED = 0
    NVML_FEATURE_ENABLED = 1
    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_GRAPHICS = 0
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_PCIE_UTIL_TX_BYTES = 0
    NVML_PCIE_UTIL_RX_BYTES = 1
    NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    NVML_VOLATILE_ECC = 0
    NVML_AGGREGATE_ECC = 1
    NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS = 0
    NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR = 1
    NVML_DEVICE_MIG_DISABLE = 0
    NVML_DEVICE_MIG_ENABLE = 1
    NVML_GPU_INSTANCE_ID_ANY = 0xFFFFFFFF
    NVML_COMPUTE_INSTANCE_ID_ANY = 0xFFFFFFFF
    nvmlMemory_v2 = 0x02000028
    nvmlEventTypeSingleBitEccError = 0x1
    nvmlEventTypeDoubleBitEccError = 0x2
    nvmlEventTypeXidCriticalError = 0x8

    def __init__(self, fixture: Mapping[str, Any]):
        self.fixture = copy.deepcopy(dict(fixture))
        self.init_error: str | None = self.fixture.get("init_error")
        self.failure: str | None = None
        self.devices = [_Device(index, data) for index, data in enumerate(self.fixture.get("devices", []))]
        self.initialised = 0
        self.calls: Counter[str] = Counter()
        self.wait_timeouts: list[int] = []
        for name, code in ERROR_CODES.items():
            setattr(self, name, code)
        for name, error_class in ERROR_CLASSES.items():
            setattr(self, name, error_class)

    # Plumbing -----------------------------------------------------------------------------------

    def _enter(self, symbol: str) -> None:
        self.calls[symbol] += 1
        if self.failure is not None:
            _raise(self.failure)
        if not self.initialised:
            _raise("NVML_ERROR_UNINITIALIZED")

    def _on(self, handle: FakeHandle, symbol: str) -> dict[str, Any]:
        """Check the call may proceed on this handle and return where its answers live."""
        self._enter(symbol)
        if not isinstance(handle, FakeHandle):
            _raise("NVML_ERROR_INVALID_ARGUMENT")
        if handle.device.data.get("lost"):
            _raise("NVML_ERROR_GPU_IS_LOST")
        return handle.mig.calls if handle.mig is not None else handle.device.calls

    def _call(self, handle: FakeHandle, symbol: str, *arguments: Any) -> Any:
        calls = self._on(handle, symbol)
        if symbol not in calls:
            _raise("NVML_ERROR_NOT_SUPPORTED")
        answer = _answer(calls[symbol])
        if arguments:
            if not isinstance(answer, dict):
                raise TypeError(f"fixture: {symbol} needs a mapping keyed by its arguments")
            key = ",".join(str(int(argument)) for argument in arguments)
            if key not in answer:
                _raise("NVML_ERROR_INVALID_ARGUMENT")
            answer = _answer(answer[key])
        return answer

    # System -------------------------------------------------------------------------------------

    def nvmlInit(self):
        self.calls["nvmlInit"] += 1
        if self.init_error is not None:
            _raise(self.init_error)
        self.initialised += 1

    def nvmlShutdown(self):
        self._enter("nvmlShutdown")
        self.initialised -= 1

    def nvmlSystemGetDriverVersion(self):
        self._enter("nvmlSystemGetDriverVersion")
        return str(self.fixture.get("driver_version", ""))

    def nvmlSystemGetNVMLVersion(self):
        self._enter("nvmlSystemGetNVMLVersion")
        return str(_answer(self.fixture.get("nvml_version", "")))

    def nvmlDeviceGetCount(self):
        self._enter("nvmlDeviceGetCount_v2")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index):
        self._enter("nvmlDeviceGetHandleByIndex_v2")
        if not 0 <= index < len(self.devices):
            _raise("NVML_ERROR_INVALID_ARGUMENT")
        device = self.devices[index]
        if device.data.get("handle_error"):
            _raise(device.data["handle_error"])
        return FakeHandle(device)

    # Identity -----------------------------------------------------------------------------------

    def nvmlDeviceGetName(self, handle):
        self._on(handle, "nvmlDeviceGetName")
        return str((handle.mig or handle.device).data["name"])

    def nvmlDeviceGetUUID(self, handle):
        self._on(handle, "nvmlDeviceGetUUID")
        return str((handle.mig or handle.device).data["uuid"])

    def nvmlDeviceGetPciInfo(self, handle):
        self._on(handle, "nvmlDeviceGetPciInfo_v3")
        bus_id = str(handle.device.data["pci_bus_id"]).encode()
        # ctypes char arrays come back as bytes: the real struct's busId is bytes, not str.
        return SimpleNamespace(busId=bus_id, busIdLegacy=bus_id)

    def nvmlDeviceGetIndex(self, handle):
        self._on(handle, "nvmlDeviceGetIndex")
        return handle.device.index

    # Readings -----------------------------------------------------------------------------------

    def nvmlDeviceGetUtilizationRates(self, handle):
        answer = self._call(handle, "nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=answer["gpu"], memory=answer["memory"])

    def nvmlDeviceGetMemoryInfo(self, handle, version=None):
        symbol = "nvmlDeviceGetMemoryInfo_v2" if version else "nvmlDeviceGetMemoryInfo"
        answer = self._call(handle, symbol)
        if version:
            return SimpleNamespace(**{**answer, "version": version})
        return SimpleNamespace(total=answer["total"], free=answer["free"], used=answer["used"])

    def nvmlDeviceGetPowerUsage(self, handle):
        return self._call(handle, "nvmlDeviceGetPowerUsage")

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        return self._call(handle, "nvmlDeviceGetEnforcedPowerLimit")

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        return self._call(handle, "nvmlDeviceGetTotalEnergyConsumption")

    def nvmlDeviceGetTemperature(self, handle, sensor):
        return self._call(handle, "nvmlDeviceGetTemperature", sensor)

    def nvmlDeviceGetClockInfo(self, handle, type):
        return self._call(handle, "nvmlDeviceGetClockInfo", type)

    def nvmlDeviceGetFanSpeed(self, handle):
        return self._call(handle, "nvmlDeviceGetFanSpeed")

    def nvmlDeviceGetPcieThroughput(self, device, counter):
        return self._call(device, "nvmlDeviceGetPcieThroughput", counter)

    def nvmlDeviceGetPerformanceState(self, handle):
        return self._call(handle, "nvmlDeviceGetPerformanceState")

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle):
        return self._call(handle, "nvmlDeviceGetCurrentClocksEventReasons")

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle):
        return self._call(handle, "nvmlDeviceGetCurrentClocksThrottleReasons")

    def nvmlDeviceGetSupportedClocksEventReasons(self, handle):
        return self._call(handle, "nvmlDeviceGetSupportedClocksEventReasons")

    def nvmlDeviceGetSupportedClocksThrottleReasons(self, handle):
        return self._call(handle, "nvmlDeviceGetSupportedClocksThrottleReasons")

    def nvmlDeviceGetEccMode(self, handle):
        return list(self._call(handle, "nvmlDeviceGetEccMode"))

    def nvmlDeviceGetTotalEccErrors(self, handle, errorType, counterType):
        return self._call(handle, "nvmlDeviceGetTotalEccErrors", errorType, counterType)

    def nvmlDeviceGetRemappedRows(self, device):
        return tuple(self._call(device, "nvmlDeviceGetRemappedRows"))

    def nvmlDeviceGetRetiredPages(self, device, sourceFilter):
        return list(self._call(device, "nvmlDeviceGetRetiredPages", sourceFilter))

    def nvmlDeviceGetRetiredPagesPendingStatus(self, device):
        return self._call(device, "nvmlDeviceGetRetiredPagesPendingStatus")

    # Processes ----------------------------------------------------------------------------------

    def _processes(self, handle: FakeHandle, symbol: str, family: str) -> list[SimpleNamespace]:
        calls = self._on(handle, symbol)
        answer = calls.get(symbol, calls.get(family, {"error": "NVML_ERROR_NOT_SUPPORTED"}))
        return [
            SimpleNamespace(
                pid=entry["pid"],
                usedGpuMemory=entry.get("usedGpuMemory"),
                gpuInstanceId=entry.get("gpuInstanceId", 0xFFFFFFFF),
                computeInstanceId=entry.get("computeInstanceId", 0xFFFFFFFF),
            )
            for entry in _answer(answer)
        ]

    def nvmlDeviceGetComputeRunningProcesses_v3(self, handle):
        return self._processes(
            handle, "nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses"
        )

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle):
        return self._processes(
            handle, "nvmlDeviceGetComputeRunningProcesses_v2", "nvmlDeviceGetComputeRunningProcesses"
        )

    def nvmlDeviceGetGraphicsRunningProcesses_v3(self, handle):
        return self._processes(
            handle, "nvmlDeviceGetGraphicsRunningProcesses_v3", "nvmlDeviceGetGraphicsRunningProcesses"
        )

    def nvmlDeviceGetGraphicsRunningProcesses_v2(self, handle):
        return self._processes(
            handle, "nvmlDeviceGetGraphicsRunningProcesses_v2", "nvmlDeviceGetGraphicsRunningProcesses"
        )

    # MIG ----------------------------------------------------------------------------------------

    def nvmlDeviceGetMigMode(self, device):
        return list(self._call(device, "nvmlDeviceGetMigMode"))

    def nvmlDeviceGetMaxMigDeviceCount(self, device):
        return self._call(device, "nvmlDeviceGetMaxMigDeviceCount")

    def nvmlDeviceGetMigDeviceHandleByIndex(self, device, index):
        self._on(device, "nvmlDeviceGetMigDeviceHandleByIndex")
        mig = device.device.mig_devices.get(index)
        if mig is None:
            _raise("NVML_ERROR_NOT_FOUND")
        return FakeHandle(device.device, mig)

    def nvmlDeviceGetGpuInstanceId(self, device):
        self._on(device, "nvmlDeviceGetGpuInstanceId")
        if device.mig is None:
            _raise("NVML_ERROR_INVALID_ARGUMENT")
        return int(device.mig.data["gpu_instance_id"])

    def nvmlDeviceGetComputeInstanceId(self, device):
        self._on(device, "nvmlDeviceGetComputeInstanceId")
        if device.mig is None:
            _raise("NVML_ERROR_INVALID_ARGUMENT")
        return int(device.mig.data["compute_instance_id"])

    # Events -------------------------------------------------------------------------------------

    def nvmlEventSetCreate(self):
        self._enter("nvmlEventSetCreate")
        return FakeEventSet()

    def nvmlDeviceRegisterEvents(self, handle, eventTypes, eventSet):
        calls = self._on(handle, "nvmlDeviceRegisterEvents")
        if "nvmlDeviceRegisterEvents" in calls:
            _answer(calls["nvmlDeviceRegisterEvents"])
        device = handle.device
        eventSet.devices.append(device)
        if not device.events_queued:
            # The fixture's events happen once someone listens, as a burst right after start-up.
            device.events_queued = True
            device.pending_events.extend(device.data.get("events", []))

    def nvmlEventSetWait_v2(self, eventSet, timeoutms):
        self._enter("nvmlEventSetWait_v2")
        self.wait_timeouts.append(timeoutms)
        for device in eventSet.devices:
            if device.data.get("lost"):
                _raise("NVML_ERROR_GPU_IS_LOST")
            if device.pending_events:
                event = device.pending_events.pop(0)
                return SimpleNamespace(
                    device=FakeHandle(device),
                    eventType=int(event.get("eventType", self.nvmlEventTypeXidCriticalError)),
                    eventData=int(event["eventData"]),
                    gpuInstanceId=int(event.get("gpuInstanceId", 0xFFFFFFFF)),
                    computeInstanceId=int(event.get("computeInstanceId", 0xFFFFFFFF)),
                )
        # A real wait with a timeout would block that long; the fake never sleeps.
        _raise("NVML_ERROR_TIMEOUT")

    def nvmlEventSetFree(self, eventSet):
        self._enter("nvmlEventSetFree")
        eventSet.freed = True

    # Test controls (not in pynvml) --------------------------------------------------------------

    def lose_gpu(self, index: int) -> None:
        """The GPU falls off the bus: every call on its handle answers NVML_ERROR_GPU_IS_LOST."""
        self.devices[index].data["lost"] = True

    def emit_xid(self, index: int, xid: int, count: int = 1) -> None:
        event = {"eventType": self.nvmlEventTypeXidCriticalError, "eventData": xid}
        self.devices[index].pending_events.extend([event] * count)

    def set_answer(self, index: int, symbol: str, answer: Any) -> None:
        self.devices[index].calls[symbol] = answer

    def fail_everything(self, error: str | None) -> None:
        """Every call fails with ``error`` (a driver unloaded under us); None heals it."""
        self.failure = error
        if error is not None:
            error_code(error)

    def process_reader(self) -> ProcessReader:
        """A ``/proc`` reader answering from the fixture's ``processes``."""
        table = {int(pid): entry for pid, entry in self.fixture.get("processes", {}).items()}

        def read(pid: int) -> ProcessView | None:
            entry = table.get(pid)
            if entry is None:
                return None
            return ProcessView(list(entry.get("cmdline", [])), entry.get("environ"))

        return read


def load_fake_nvml(path: Path) -> FakeNvml:
    return FakeNvml(json.loads(Path(path).read_text(encoding="utf-8")))
