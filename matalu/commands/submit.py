"""`matalu submit SUBCOMMAND … --address http://HEAD:8265`."""

from __future__ import annotations

import os
import sys

USAGE = """usage: matalu submit SUBCOMMAND [ARGS…] --address http://HEAD:8265 [--resources NAME=N[,…]]
                     [--allow-local-paths] [--python PATH] [--no-wait]

Runs `matalu SUBCOMMAND ARGS…` (ingest, encode, codec train, lm train, …) as a Ray job: working_dir = this checkout,
follows its logs and exits with the job's status (or returns at once with --no-wait; see `matalu jobs`).
  --address            the head's Jobs API (the dashboard, port 8265); default RAY_API_SERVER_ADDRESS
  --resources          custom resources every actor / training worker requests, e.g. cpu_node=1 or gpu_node=1
                       (the node types in cluster.yaml); default: none, the job runs anywhere
  --allow-local-paths  local paths in ARGS exist on every node (a shared mount): pass them as absolute paths.
                       Without it, local paths are refused unless the head is on this machine (use s3:// URIs)
  --python             the interpreter on the cluster (default: `python` on the nodes' PATH; this one for a local head)
The Ray auth token comes from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token; AWS credentials from the
nodes' environment or instance role: neither is ever put into the job."""

OWN = ("--address", "--python", "--resources")


def run_argv(argv: list[str]) -> int:
    from jobs.cluster import ClusterError
    from matalu.submit import submit

    opts: dict = {"address": os.environ.get("RAY_API_SERVER_ADDRESS"), "python": None, "resources": ""}
    wait, allow, rest = True, False, []
    i = 0
    while i < len(argv):
        a = argv[i]
        name = a.split("=", 1)[0]
        if name in OWN:
            if "=" in a:
                opts[name[2:]] = a.split("=", 1)[1]
            elif i + 1 < len(argv):
                opts[name[2:]] = argv[i + 1]
                i += 1
        elif a == "--no-wait":
            wait = False
        elif a == "--allow-local-paths":
            allow = True
        elif a in ("-h", "--help") and not rest:
            print(USAGE)
            return 0
        else:
            rest.append(a)
        i += 1
    if not opts["address"]:
        print("matalu submit: error: --address http://HEAD:8265 (the Ray dashboard / Jobs API address) is required",
              file=sys.stderr)
        return 2
    try:
        return submit(opts["address"], rest, python=opts["python"], wait=wait, resources=opts["resources"],
                      allow_local_paths=allow)
    except (ValueError, ClusterError) as e:
        print(f"matalu submit: error: {e}", file=sys.stderr)
        return 2
