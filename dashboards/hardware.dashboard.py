"""Hardware & GPU: is any node short of CPU, memory, disk or network; is every GPU healthy and busy,
and which Ray job or actor holds its memory?"""

from vocabulary import (
    ANY_IS_BAD,
    BYTES,
    BYTES_PER_SECOND,
    CELSIUS,
    COUNT,
    DATASOURCE,
    FULL,
    NODE,
    NONE,
    OUR_NODE,
    QUARTER,
    RATIO,
    SATURATION,
    SECONDS,
    THIRD,
    WASTE,
    WATTS,
    Board,
    Query,
    Row,
    bargauge,
    stat,
    steps,
    table,
    timeseries,
)

GPU = f"{{{OUR_NODE}}}"
GPU_LEGEND = "{{instance}} GPU {{gpu}}"
# GPUs under 5% busy while a Ray process (task, actor, idle worker) holds memory on them.
IDLE_HELD = (
    f"(max by (instance, gpu) (raylens_gpu_utilisation_ratio{GPU}) < 0.05) and on (instance, gpu) "
    f'count by (instance, gpu) (raylens_gpu_process_memory_used_bytes{{{OUR_NODE},ray_worker!=""}})'
)
TEMPERATURE = steps("green", (80, "orange"), (90, "red"))

dashboard = Board(
    key="hardware",
    description="Per node CPU, memory, disk and network from the raylens node collector, and per GPU "
    "utilisation, memory, power, temperature and errors from the raylens GPU collector (NVML), with GPU "
    "memory attributed to Ray jobs and actors.",
    variables=[DATASOURCE, NODE],
    rows=[
        Row(
            "Nodes",
            [
                table(
                    "Nodes",
                    "Which machines are in the cluster, of what instance type and market, and since when?",
                    [
                        Query(f"raylens_node_info{{{OUR_NODE}}}"),
                        Query(f"time() - raylens_node_boot_time_seconds{{{OUR_NODE}}}"),
                        Query(f"instance:raylens_node_num_cpu:sum{{{OUR_NODE}}}"),
                        Query(f"raylens_node_memory_total_bytes{{{OUR_NODE}}}"),
                    ],
                    NONE,
                    columns={
                        "instance": "Exporter",
                        "hostname": "Host",
                        "instance_type": "Instance type",
                        "market": "Market",
                        "ray_node_id": "Ray node",
                        "Value #B": "Up for",
                        "Value #C": "CPUs",
                        "Value #D": "Memory",
                    },
                    hide=("Value #A", "__name__", "job"),
                    units={"Value #B": SECONDS, "Value #C": COUNT, "Value #D": BYTES},
                    height=6,
                ),
            ],
        ),
        Row(
            "CPU and memory",
            [
                timeseries(
                    "CPU busy per node",
                    "Which nodes are short of CPU, and since when?",
                    Query(f"instance:raylens_node_cpu_utilisation:rate5m{{{OUR_NODE}}}", "{{instance}}"),
                    RATIO,
                    minimum=0,
                    maximum=1,
                    thresholds=SATURATION,
                    show_thresholds=True,
                ),
                timeseries(
                    "Load per CPU",
                    "Is work queueing for CPU (load above 1 per CPU means runnable threads wait)?",
                    Query(f"instance:raylens_node_load1_per_cpu:ratio{{{OUR_NODE}}}", "{{instance}}"),
                    COUNT,
                    decimals=2,
                    thresholds=steps("green", (1, "orange"), (2, "red")),
                    show_thresholds=True,
                ),
                timeseries(
                    "Memory in use per node",
                    "Which nodes are close to running out of memory (and to Ray's OOM killer)?",
                    Query(f"instance:raylens_node_memory_utilisation:ratio{{{OUR_NODE}}}", "{{instance}}"),
                    RATIO,
                    minimum=0,
                    maximum=1,
                    thresholds=SATURATION,
                    show_thresholds=True,
                ),
                timeseries(
                    "Shared memory per node",
                    "How much shared memory (/dev/shm, where Ray's object store lives) is in use?",
                    Query(f"raylens_node_memory_shared_bytes{{{OUR_NODE}}}", "{{instance}}"),
                    BYTES,
                ),
            ],
        ),
        Row(
            "Disk and network",
            [
                timeseries(
                    "Disk busy",
                    "Is any disk saturated (busy close to 100% of the time)?",
                    Query(
                        f"instance_device:raylens_node_disk_io_time_seconds:rate5m{{{OUR_NODE}}}",
                        "{{instance}} {{device}}",
                    ),
                    RATIO,
                    minimum=0,
                    thresholds=SATURATION,
                    width=THIRD,
                ),
                timeseries(
                    "Disk throughput",
                    "How many bytes per second does each node read and write?",
                    [
                        Query(
                            "sum by (instance) (rate(raylens_node_disk_read_bytes_total"
                            f"{{{OUR_NODE}}}[$__rate_interval]))",
                            "read {{instance}}",
                        ),
                        Query(
                            "sum by (instance) (rate(raylens_node_disk_written_bytes_total"
                            f"{{{OUR_NODE}}}[$__rate_interval]))",
                            "written {{instance}}",
                        ),
                    ],
                    BYTES_PER_SECOND,
                    width=THIRD,
                ),
                bargauge(
                    "Filesystem space used",
                    "Which filesystem is filling up (spilling and logs land on disk)?",
                    Query(
                        f"instance_mountpoint:raylens_node_filesystem_used:ratio{{{OUR_NODE}}}",
                        "{{instance}} {{mountpoint}}",
                    ),
                    RATIO,
                    maximum=1,
                    width=THIRD,
                ),
                timeseries(
                    "Network throughput",
                    "How much does each node send and receive (object transfers, shuffles, checkpoints)?",
                    [
                        Query(
                            f"instance:raylens_node_network_receive_bytes:rate5m{{{OUR_NODE}}}",
                            "received {{instance}}",
                        ),
                        Query(
                            f"instance:raylens_node_network_transmit_bytes:rate5m{{{OUR_NODE}}}",
                            "sent {{instance}}",
                        ),
                    ],
                    BYTES_PER_SECOND,
                ),
                timeseries(
                    "Network errors and drops",
                    "Is any interface dropping or corrupting packets?",
                    # The recording rule: adding four counters per device here took 2.2 s over 6 h at 1,000 nodes.
                    Query(f"instance:raylens_node_network_errors_and_drops:rate5m{{{OUR_NODE}}}", "{{instance}}"),
                    "pps",
                    thresholds=ANY_IS_BAD,
                ),
            ],
        ),
        Row(
            "GPUs",
            [
                stat(
                    "GPUs",
                    "How many GPUs does the cluster have?",
                    Query(f"count(raylens_gpu_up{GPU})"),
                    COUNT,
                    width=QUARTER,
                ),
                stat(
                    "GPUs lost",
                    "Has any GPU fallen off the bus (NVML reports it lost)?",
                    Query(f"count(raylens_gpu_up{GPU} == 0) or vector(0)"),
                    COUNT,
                    thresholds=ANY_IS_BAD,
                    color_background=True,
                    width=QUARTER,
                ),
                stat(
                    "Average GPU utilisation",
                    "How busy are the GPUs we pay for, on average?",
                    Query(f"avg(raylens_gpu_utilisation_ratio{GPU})"),
                    RATIO,
                    thresholds=WASTE,
                    sparkline=True,
                    width=QUARTER,
                ),
                stat(
                    "Idle GPUs held by Ray",
                    "How many GPUs hold memory of a Ray process (task, actor or idle worker) but do almost "
                    "no work (under 5%)?",
                    Query(f"count({IDLE_HELD}) or vector(0)"),
                    COUNT,
                    thresholds=ANY_IS_BAD,
                    width=QUARTER,
                ),
                timeseries(
                    "GPU utilisation",
                    "Which GPUs are busy and which sit idle?",
                    Query(f"raylens_gpu_utilisation_ratio{GPU}", GPU_LEGEND),
                    RATIO,
                    minimum=0,
                    maximum=1,
                    thresholds=WASTE,
                ),
                timeseries(
                    "GPU memory used",
                    "How full is each GPU's memory (an out-of-memory error is near at 100%)?",
                    # The recording rule (MIG instances summed per GPU, as here) instead of two aggregations.
                    Query(f"instance_gpu:raylens_gpu_memory_used:ratio{GPU}", GPU_LEGEND),
                    RATIO,
                    minimum=0,
                    maximum=1,
                    thresholds=SATURATION,
                    show_thresholds=True,
                ),
                timeseries(
                    "GPU power",
                    "How much power does each GPU draw against its limit?",
                    [
                        Query(f"raylens_gpu_power_usage_watts{GPU}", GPU_LEGEND),
                        Query(f"raylens_gpu_power_limit_watts{GPU}", "limit " + GPU_LEGEND),
                    ],
                    WATTS,
                    width=THIRD,
                ),
                timeseries(
                    "GPU temperature",
                    "Is any GPU running hot enough to throttle?",
                    Query(f"raylens_gpu_temperature_celsius{GPU}", GPU_LEGEND),
                    CELSIUS,
                    thresholds=TEMPERATURE,
                    show_thresholds=True,
                    width=THIRD,
                ),
                timeseries(
                    "GPU throttling",
                    "Why are GPU clocks held back (power cap, thermal, idle)?",
                    Query(
                        # Filtered before summing (values are 0 or 1): most of the GPU x reason series are 0.
                        f"sum by (instance, gpu, reason) (raylens_gpu_clocks_event_reason{GPU} > 0)",
                        "{{instance}} GPU {{gpu}} {{reason}}",
                    ),
                    COUNT,
                    width=THIRD,
                ),
                timeseries(
                    "GPU errors (XID and ECC)",
                    "Has any GPU reported XID errors or uncorrectable memory errors?",
                    [
                        Query(
                            "sum by (instance, gpu, xid) (increase(raylens_gpu_xid_errors_total"
                            f"{GPU}[$__rate_interval]))",
                            "XID {{xid}} {{instance}} GPU {{gpu}}",
                        ),
                        Query(
                            "sum by (instance, gpu) (increase(raylens_gpu_ecc_errors_total"
                            f'{{{OUR_NODE},error_type="uncorrected"}}[$__rate_interval]))',
                            "ECC uncorrected {{instance}} GPU {{gpu}}",
                        ),
                    ],
                    COUNT,
                    thresholds=ANY_IS_BAD,
                    bars=True,
                ),
                timeseries(
                    "Idle GPUs held by Ray over time",
                    "When were GPUs allocated to Ray processes but idle (paid for, doing nothing)?",
                    Query(IDLE_HELD, GPU_LEGEND),
                    RATIO,
                    minimum=0,
                    thresholds=WASTE,
                ),
                table(
                    "GPU memory by process",
                    "Which Ray job, actor or task holds memory on which GPU?",
                    Query(
                        "sum by (instance, gpu, job_id, actor_class, actor_id, task_name, pid) "
                        f"(raylens_gpu_process_memory_used_bytes{GPU})"
                    ),
                    BYTES,
                    columns={
                        "instance": "Node",
                        "gpu": "GPU",
                        "job_id": "Ray job",
                        "actor_class": "Actor class",
                        "actor_id": "Actor",
                        "task_name": "Task",
                        "pid": "PID",
                        "Value": "GPU memory",
                    },
                    sort_by="GPU memory",
                    width=FULL,
                ),
            ],
        ),
    ],
)
