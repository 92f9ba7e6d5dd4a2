"""`matalu jobs list | status ID | logs ID [--follow] | stop ID`: the Ray jobs of a cluster (Jobs API)."""

from __future__ import annotations

import os
from datetime import datetime, timezone


def add_parser(sub) -> None:
    p = sub.add_parser("jobs", help="list, inspect, follow or stop Ray jobs (matalu submit …)")
    p.add_argument("--address", default=os.environ.get("RAY_API_SERVER_ADDRESS"),
                   help="the head's Jobs API, http://HEAD:8265 (default RAY_API_SERVER_ADDRESS)")
    jsub = p.add_subparsers(dest="jobs_cmd", required=True)
    jsub.add_parser("list", help="every job: id, status, start time, command")
    for name, text in (("status", "a job's status and message"), ("logs", "a job's output"), ("stop", "stop a job")):
        q = jsub.add_parser(name, help=text)
        q.add_argument("job_id", metavar="ID")
        if name == "logs":
            q.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ") if ms else "-"


def run(args) -> int:
    from matalu.submit import call, client, follow_logs

    if not args.address:
        raise ValueError("--address http://HEAD:8265 (the Ray dashboard / Jobs API address) is required")
    c = client(args.address)
    cmd = args.jobs_cmd
    if cmd == "list":
        jobs = sorted(call(args.address, c.list_jobs), key=lambda j: j.start_time or 0)
        print(f"{'ID':<28} {'STATUS':<10} {'STARTED':<21} COMMAND")
        for j in jobs:
            entry = j.entrypoint or ""
            if " -m matalu " in entry:
                entry = "matalu " + entry.split(" -m matalu ", 1)[1]
            print(f"{j.submission_id or j.job_id:<28} {str(j.status.value):<10} {_when(j.start_time):<21} {entry}")
        return 0
    if cmd == "status":
        info = call(args.address, lambda: c.get_job_info(args.job_id))
        print(f"{args.job_id}: {info.status.value}" + (f" ({info.message})" if info.message else ""))
        return 0
    if cmd == "logs":
        if args.follow:
            call(args.address, lambda: follow_logs(c, args.job_id))
        else:
            print(call(args.address, lambda: c.get_job_logs(args.job_id)), end="")
        return 0
    stopped = call(args.address, lambda: c.stop_job(args.job_id))
    print(f"{args.job_id}: {'stop requested' if stopped else 'not running (nothing to stop)'}")
    return 0
