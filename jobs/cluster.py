"""Connecting to Ray: a given address, the job's own cluster (RAY_ADDRESS inside a Ray job), or a local Ray."""

from __future__ import annotations

import logging
import os


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to ``address``, else to RAY_ADDRESS (set inside a Ray job), else start a local Ray."""
    import ray

    if ray.is_initialized():
        return
    kw = dict(logging_level=logging.WARNING, configure_logging=True, log_to_driver=True)
    if address:
        ray.init(address=address, **kw)
    elif os.environ.get("RAY_ADDRESS"):
        ray.init(**kw)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, **kw)
