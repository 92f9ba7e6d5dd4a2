"""``matalu submit``: run any matalu subcommand as a Ray job through the Jobs API."""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Options whose values are local paths: made absolute so the job (whose cwd is the unpacked working_dir) finds them.
PATH_OPTIONS = ("--out", "--config", "--sources-dir", "--texts", "--to", "--archive", "--manifest", "--data", "--tokenizer",
                "--lm")
EXCLUDES = ["/.venv", "/data", "/benchmarks/out", "__pycache__", ".pytest_cache", "*.egg-info"]  # gitignore syntax: "/x" = top level only


def absolutize(argv: list[str]) -> list[str]:
    out = list(argv)
    for i, a in enumerate(out):
        for opt in PATH_OPTIONS:
            if a == opt and i + 1 < len(out) and "://" not in out[i + 1]:
                out[i + 1] = os.path.abspath(out[i + 1])
            elif a.startswith(opt + "=") and "://" not in a:
                out[i] = f"{opt}={os.path.abspath(a.split('=', 1)[1])}"
    return out


def _submit_with_retry(client, entry: str, runtime_env: dict, wait_s: float = 120.0) -> str:
    """Submit, waiting while a freshly started head has no job agent yet ("No available agent")."""
    import time

    deadline = time.monotonic() + wait_s
    delay = 1.0
    while True:
        try:
            return client.submit_job(entrypoint=entry, runtime_env=runtime_env)
        except RuntimeError as e:
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise
            print("[submit] the head's job agent is not up yet; retrying", flush=True)
            time.sleep(delay)
            delay = min(delay * 1.5, 10.0)


def submit(address: str, argv: list[str], *, python: str | None = None, wait: bool = True,
           env: dict[str, str] | None = None) -> int:
    from ray.job_submission import JobStatus, JobSubmissionClient

    if not argv:
        raise SystemExit("matalu submit: name the subcommand to run, e.g. `matalu submit ingest --out s3://… --address http://HEAD:8265`")
    client = JobSubmissionClient(address)
    entry = shlex.join([python or sys.executable, "-m", "matalu", *absolutize(argv)])
    runtime_env: dict = {"working_dir": str(REPO_ROOT), "excludes": EXCLUDES}
    if env:
        runtime_env["env_vars"] = env
    job_id = _submit_with_retry(client, entry, runtime_env)
    print(f"[submit] job {job_id} on {address}: {entry}", flush=True)
    if not wait:
        return 0

    async def follow() -> None:
        async for lines in client.tail_job_logs(job_id):
            sys.stdout.write(lines)
            sys.stdout.flush()

    asyncio.run(follow())
    status = client.get_job_status(job_id)
    print(f"[submit] job {job_id} finished: {status}", flush=True)
    return 0 if status == JobStatus.SUCCEEDED else 1
