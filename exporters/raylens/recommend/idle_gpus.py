"""Idle GPUs: GPUs Ray jobs held over the whole window while the node's GPUs stayed nearly idle.

Held is Ray's logical ``GPU`` resource (``raylens_ray_node_resource_used``, its minimum over the
window: held the whole time). Busy is measured: the sum over the node's GPUs of their mean
utilisation (raylens's gpu collector, joined to the Ray node through ``raylens_node_info``; else Ray's
own ``ray_node_gpus_utilization``, joined by IP), in GPU-equivalents. When busy / held is below
``recommendations.idle_gpu_utilisation_percent``, the saving is the price of the held GPU time that did
nothing: (held - busy) x the node's price per GPU-hour (its GPU price component over its GPU count).
"""

from __future__ import annotations

from raylens.config import RecommendationsConfig
from raylens.recommend.model import Evidence, Recommendation
from raylens.recommend.nodes import NodeFacts
from raylens.recommend.readings import Readings, narrowed


def queries(window: str) -> dict[str, str]:
    return {
        "held": f'min_over_time(raylens_ray_node_resource_used{{resource="GPU"{{m}}}}[{window}])',
        # Per node: the sum over its GPUs of their mean utilisation (GPU-equivalents busy).
        "busy_raylens": (
            "sum by (node_id) (label_replace("
            f"avg_over_time(raylens_gpu_utilisation_ratio[{window}]) * on (instance) group_left (ray_node_id) "
            'max by (instance, ray_node_id) (raylens_node_info{ray_node_id!=""{m}}), '
            '"node_id", "$1", "ray_node_id", "(.+)"))'
        ),
        "busy_ray": f"sum by (ip) (avg_over_time(ray_node_gpus_utilization{{{{m}}}}[{window}])) / 100",
        "gpu_price": 'sum by (node_id) (raylens_cost_node_resource_dollars_per_second{resource="gpu"{m}}) * 3600',
        "gpus": 'max by (node_id) (raylens_ray_node_resource_capacity{resource="GPU"{m}})',
        "ips": "max by (node_id, ip) (raylens_ray_node_info{{m}})",
    }


def recommend_idle_gpus(
    readings: Readings, config: RecommendationsConfig, nodes: dict[str, NodeFacts]
) -> list[Recommendation]:
    window = config.idle_gpu_window
    templates = queries(window)
    held = {key[0]: value for key, value in readings.by(templates["held"], "node_id").items() if value > 0}
    if not held:
        return []
    busy = {key[0]: value for key, value in readings.by(templates["busy_raylens"], "node_id").items()}
    narrow_busy: dict[str, list[tuple[str, str]]] = {node_id: [("ray_node_id", node_id)] for node_id in busy}
    busy_source = "busy_raylens"
    if not busy:
        by_ip = readings.by(templates["busy_ray"], "ip")
        ips = readings.by(templates["ips"], "node_id", "ip")
        busy = {node_id: by_ip[(ip,)] for (node_id, ip) in ips if (ip,) in by_ip}
        narrow_busy = {node_id: [("ip", ip)] for (node_id, ip) in ips}
        busy_source = "busy_ray"
    prices = readings.by(templates["gpu_price"], "node_id")
    counts = readings.by(templates["gpus"], "node_id")
    threshold = config.idle_gpu_utilisation_percent / 100
    found = []
    for node_id, gpus_held in held.items():
        if node_id not in busy or not counts.get((node_id,)):
            continue  # no utilisation reading: no evidence either way
        used = min(busy[node_id], gpus_held)
        if used / gpus_held >= threshold:
            continue
        per_gpu_hour = prices.get((node_id,), 0.0) / counts[(node_id,)]
        idle = gpus_held - used
        savings = idle * per_gpu_hour
        node = nodes.get(node_id)
        evidence = (
            Evidence(
                f"GPUs held all of the last {window}", narrowed(templates["held"], [("node_id", node_id)]), gpus_held
            ),
            Evidence(
                "GPU-equivalents busy (mean utilisation summed over the node's GPUs)",
                narrowed(templates[busy_source], narrow_busy.get(node_id, [])),
                busy[node_id],
            ),
            Evidence(
                "node GPU price, US dollars per hour",
                narrowed(templates["gpu_price"], [("node_id", node_id)]),
                prices.get((node_id,), 0.0),
            ),
            Evidence("GPUs on the node", narrowed(templates["gpus"], [("node_id", node_id)]), counts[(node_id,)]),
        )
        described = f" ({node.described})" if node else ""
        found.append(
            Recommendation(
                kind="idle_gpu",
                target=node_id,
                target_type="node",
                summary=f"Node {node_id}{described}: Ray jobs held {gpus_held:g} GPU(s) for the last {window}, "
                f"{used / gpus_held:.0%} busy; {idle:.2f} GPU(s) paid for nothing at ${per_gpu_hour:.4f} per GPU-hour.",
                action="Find the job holding the GPUs (raylens_gpu_process_memory_used_bytes, `raylens cost explain "
                "node`) and stop it, or let it release its GPUs between phases.",
                savings_dollars_per_hour=savings,
                evidence=evidence,
                instance_type=node.instance_type if node else "",
                details={"gpus_held": gpus_held, "gpus_busy": used, "dollars_per_gpu_hour": per_gpu_hour},
            )
        )
    return found
