"""cluster.yaml: valid for Ray's cluster launcher, and it says what the jobs rely on."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import ray
import yaml

ROOT = Path(__file__).resolve().parents[2]


def load() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_validates_against_rays_schema():
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(load(), schema)


def test_node_types_resources_setup_and_token():
    cfg = load()
    types = cfg["available_node_types"]
    assert types[cfg["head_node_type"]]["resources"] == {"CPU": 0}  # drivers only
    assert types["cpu"]["resources"].keys() == {"cpu_node"}
    assert types["gpu"]["resources"].keys() == {"gpu_node"}
    assert all(0 < types[t]["max_workers"] <= cfg["max_workers"] for t in ("cpu", "gpu"))  # autoscaling bounds
    setup = "\n".join(cfg["setup_commands"])
    assert "make setup" in setup  # the pinned lock, as on a laptop
    for pkg in ("ffmpeg", "espeak-ng", "sox", "libsndfile1"):
        assert pkg in setup
    assert cfg["file_mounts"]["~/matalu"] == "."  # the code
    assert cfg["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"  # the token, as a file, never echoed
    starts = cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)
    text = (ROOT / "cluster.yaml").read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret_access_key|RAY_AUTH_TOKEN=", text, re.I)
