"""Connecting to Ray: a given address, the job's own cluster (RAY_ADDRESS inside a Ray job), or a local Ray."""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger("matalu.jobs")


class ClusterError(RuntimeError):
    """Ray could not be started or reached; the message says what to do."""


def init_ray(address: str | None = None, num_cpus: int | None = None, *, attempts: int = 2) -> None:
    """Connect to ``address``, else to RAY_ADDRESS (set inside a Ray job), else start a local Ray.

    A local Ray that does not come up in time (its start-up wait is fixed at 30 s; seen on a loaded 2-core machine)
    is shut down and started once more after a pause; if that fails too, :class:`ClusterError` says what to do."""
    import ray

    if ray.is_initialized():
        return
    kw = dict(logging_level=logging.WARNING, configure_logging=True, log_to_driver=True)
    target = address or os.environ.get("RAY_ADDRESS") or ""
    if target == "local":  # Ray's word for "start a new local Ray"
        target = address = ""
    for attempt in range(1, attempts + 1):
        try:
            if address:
                ray.init(address=address, **kw)
            elif target:
                ray.init(**kw)  # inside a Ray job: RAY_ADDRESS names the job's cluster
            else:
                ray.init(num_cpus=num_cpus, include_dashboard=False, **kw)
            return
        except Exception as e:  # Ray raises a bare Exception when a local node is slow to start
            ray.shutdown()
            if attempt < attempts:
                log.warning("Ray did not start (%s); retrying once", str(e).splitlines()[0] if str(e) else type(e).__name__)
                time.sleep(5.0)
                continue
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            if target:
                raise ClusterError(f"could not connect to the Ray cluster at {target} ({first}); check that the head is "
                                   "running (`ray status`) and the address, or leave --address unset for a local Ray") from e
            raise ClusterError(f"a local Ray did not start after {attempts} tries ({first}); the machine may be short of "
                               "CPU or memory: close other work and rerun, or start Ray yourself (`ray start --head`) and "
                               "pass --address auto") from e


# -- custom resources (cluster.yaml's node types) -----------------------------------------------------------------
RESOURCES_ENV = "MATALU_RAY_RESOURCES"


def parse_resources(text: str) -> dict[str, float]:
    """``"gpu_node=1,foo=0.5"`` -> ``{"gpu_node": 1.0, "foo": 0.5}``; a bad item is a one-sentence ValueError."""
    out: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in (text or "").split(","))):
        name, sep, amount = item.partition("=")
        try:
            value = float(amount) if sep else 1.0
        except ValueError:
            value = -1.0
        if not name or value <= 0 or name in ("CPU", "GPU", "memory"):
            raise ValueError(f"resource {item!r}: expected NAME=AMOUNT with a custom resource name and an amount > 0, "
                             "e.g. cpu_node=1 or gpu_node=1 (the node types' resources in cluster.yaml)")
        out[name] = value
    return out


def job_resources() -> dict[str, float]:
    """The custom resources each unit actor / training worker of this job requests: MATALU_RAY_RESOURCES, set by
    ``matalu submit --resources`` (empty: run anywhere, as on a laptop)."""
    return parse_resources(os.environ.get(RESOURCES_ENV, ""))
