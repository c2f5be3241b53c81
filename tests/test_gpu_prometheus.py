"""The real exporter process with the gpu collector on the fake NVML, ingested by a real Prometheus.

Two exporters: one reads the H100 fixture (``RAYLENS_FAKE_NVML``), one a host without the NVML library,
which must keep serving its node metrics while reporting the gpu collector down.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from services import running_exporter, running_prometheus

FIXTURES = Path(__file__).parent / "fixtures" / "nvml"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("gpu-e2e")
    with pytest.MonkeyPatch.context() as environment:
        # The exporter subprocesses inherit the environment at start; each gets its own fixture.
        environment.setenv("RAYLENS_FAKE_NVML", str(FIXTURES / "h100-sxm-80gb.json"))
        with running_exporter(tmp, "--collectors=node,gpu") as gpus:
            environment.setenv("RAYLENS_FAKE_NVML", str(FIXTURES / "no-nvml-library.json"))
            with (
                running_exporter(tmp, "--collectors=node,gpu") as no_gpus,
                running_prometheus(tmp, [gpus.address, no_gpus.address]) as prometheus,
            ):
                yield gpus, no_gpus, prometheus


def test_gpu_series_arrive_with_dcgm_labels(stack) -> None:
    gpus, _, prometheus = stack
    power = prometheus.wait_for(f'raylens_gpu_power_usage_watts{{instance="{gpus.address}"}}')
    assert {series["metric"]["gpu"] for series in power} == {"0", "1"}
    first = next(series for series in power if series["metric"]["gpu"] == "0")
    assert first["metric"]["UUID"] == "GPU-5d2b8c3e-6f1a-4b7e-9c2d-1a8f3e7b6c40"
    assert first["metric"]["model_name"] == "NVIDIA H100 80GB HBM3"
    assert first["metric"]["pci_bus_id"] == "00000000:18:00.0"
    assert float(first["value"][1]) == pytest.approx(645.123)
    # Empty labels (GPU_I_ID on a whole GPU) are dropped on ingestion, as for any Prometheus series.
    memory = prometheus.wait_for('raylens_gpu_memory_total_bytes{gpu="0"}')
    assert "GPU_I_ID" not in memory[0]["metric"]
    health = prometheus.wait_for(f'raylens_scrape_collector_success{{collector="gpu",instance="{gpus.address}"}}')
    assert health[0]["value"][1] == "1"


def test_which_job_holds_which_gpu_and_is_it_busy(stack) -> None:
    _, _, prometheus = stack
    # The question the collector exists for: which job holds each GPU, and is it using it?
    held = prometheus.wait_for("sum by (job_id) (raylens_gpu_process_memory_used_bytes)")
    by_job = {series["metric"]["job_id"]: float(series["value"][1]) for series in held}
    assert by_job == {"02000000": 73400 * 2**20, "03000000": (41234 + 512) * 2**20}
    busy = prometheus.wait_for(
        "raylens_gpu_utilisation_ratio * on (UUID) group_left (job_id)"
        ' (sum by (UUID, job_id) (raylens_gpu_process_memory_used_bytes{job_id="02000000"}) > bool 0)'
    )
    assert [(series["metric"]["job_id"], series["metric"]["gpu"]) for series in busy] == [("02000000", "0")]
    assert float(busy[0]["value"][1]) == pytest.approx(0.97)
    actor = prometheus.wait_for('raylens_gpu_process_memory_used_bytes{actor_class="LLMServer"}')
    assert actor[0]["metric"]["task_name"] == "LLMServer.generate"


def test_host_without_nvml_reports_gpu_down_and_keeps_serving(stack) -> None:
    _, no_gpus, prometheus = stack
    instance = f'instance="{no_gpus.address}"'
    gpu = prometheus.wait_for(f'raylens_scrape_collector_success{{collector="gpu",{instance}}}')
    assert gpu[0]["value"][1] == "0"
    node = prometheus.wait_for(f'raylens_scrape_collector_success{{collector="node",{instance}}}')
    assert node[0]["value"][1] == "1"
    status = prometheus.wait_for(f'raylens_gpu_nvml_info{{status="unavailable",{instance}}}')
    assert status[0]["metric"]["reason"] == "NVML_ERROR_LIBRARY_NOT_FOUND: NVML Shared Library Not Found"
    assert prometheus.query(f"raylens_gpu_up{{{instance}}}") == []
    assert prometheus.wait_for(f'up{{job="raylens",{instance}}} == 1')


def documented_queries() -> list[str]:
    text = (Path(__file__).resolve().parents[1] / "docs" / "gpu.md").read_text()
    block = text.split("```promql\n", 1)[1].split("```", 1)[0]
    queries, current = [], []
    for line in [*block.splitlines(), ""]:
        if line.strip() and not line.startswith("#"):
            current.append(line)
        elif current:
            queries.append("\n".join(current))
            current = []
    return queries


def test_documented_queries_run_on_prometheus(stack) -> None:
    _, _, prometheus = stack
    queries = documented_queries()
    assert len(queries) == 5
    prometheus.wait_for("raylens_gpu_process_memory_used_bytes")
    for query in queries:
        prometheus.query(query)  # asserts the query parses and evaluates
    by_job = prometheus.query(queries[0])
    assert {series["metric"]["job_id"] for series in by_job} == {"02000000", "03000000"}
    busy = prometheus.query(queries[1])
    assert {(series["metric"]["UUID"][:12], series["metric"]["job_id"]) for series in busy} == {
        ("GPU-5d2b8c3e", "02000000"),
        ("GPU-a37e41b9", "03000000"),
    }
