"""``matalu submit`` and ``matalu jobs``: any matalu subcommand as a Ray job through the Jobs API.

* **Code**: the job's ``working_dir`` is this checkout (the same code on every node); a ``--config`` inside the checkout
  travels with it.
* **Paths**: a local path in an argument names a file on *this* machine, which a cluster's nodes cannot read. Against
  a head on this machine (127.0.0.1 / localhost) paths are made absolute; against any other head they are refused
  (use ``s3://`` URIs) unless ``--allow-local-paths`` says they exist on storage every node mounts at the same path.
* **Credentials** reach jobs only through the nodes' environment or instance roles: nothing here copies AWS
  variables into the job's runtime_env, entrypoint or metadata, and nothing prints them.
* **Ray auth token** (Ray 2.60 token authentication): read from RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH or
  ``~/.ray/auth_token`` and sent as a header; never printed. A head that wants one and gets none is one sentence.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from pathlib import Path
from urllib.parse import urlsplit

from jobs.cluster import RESOURCES_ENV, ClusterError, parse_resources

REPO_ROOT = Path(__file__).resolve().parent.parent
# Options whose values are paths (or URIs) in the matalu subcommands.
PATH_OPTIONS = ("--out", "--config", "--sources-dir", "--texts", "--to", "--archive", "--manifest", "--segments",
                "--codec", "--data", "--json", "--torchscript", "--tokenizer", "--lm", "--dialogs", "--asr", "--lid",
                "--topics")
# The same option name that is not a path in one subcommand (`ingest --dialogs N` is a count; `lm eval --dialogs` a URI).
NOT_PATHS = {"ingest": ("--dialogs",)}
EXCLUDES = ["/.venv", "/data", "/benchmarks/out", "__pycache__", ".pytest_cache", "*.egg-info"]  # gitignore syntax: "/x" = top level only
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_local_head(address: str) -> bool:
    """True when the Jobs API address is on this machine (its nodes can read this machine's files)."""
    return (urlsplit(address if "://" in address else f"http://{address}").hostname or "") in LOCAL_HOSTS


def _is_path(opt: str, value: str) -> bool:
    if "://" in value:
        return False
    if opt == "--codec" and ":" in value:  # module:factory or encodec:PATH-on-the-cluster
        return False
    return True


def shared_args(argv: list[str], address: str, allow_local_paths: bool = False) -> list[str]:
    """``argv`` as the job must see it: local paths made absolute (a head on this machine, or ``allow_local_paths``),
    a ``--config`` inside this checkout made relative to it (it travels in the working_dir), other local paths
    refused with a ValueError saying what to do."""
    out = list(argv)
    local = is_local_head(address)
    paths = [o for o in PATH_OPTIONS if o not in NOT_PATHS.get(out[0] if out else "", ())]
    for i, a in enumerate(out):
        opt, value, inline = a, None, False
        if a in paths and i + 1 < len(out):
            value = out[i + 1]
        elif a.split("=", 1)[0] in paths and "=" in a:
            opt, value = a.split("=", 1)
            inline = True
        if value is None or not _is_path(opt, value):
            continue
        path = Path(value).expanduser().resolve()
        if local or allow_local_paths:
            new = str(path)
        elif opt == "--config" and path.is_relative_to(REPO_ROOT):
            new = str(path.relative_to(REPO_ROOT))
        elif opt == "--config":
            raise ValueError(f"{opt} {value} is a file on this machine, outside the checkout the job ships; move it "
                             f"under {REPO_ROOT} (e.g. configs/) so it travels with the job")
        else:
            raise ValueError(f"{opt} {value} is a path on this machine, which the cluster's nodes cannot read; pass an "
                             "s3:// URI, or --allow-local-paths if every node mounts that path (a shared file system)")
        if inline:
            out[i] = f"{opt}={new}"
        else:
            out[i + 1] = new
    return out


# -- the Jobs API client --------------------------------------------------------------------------------------
def _token() -> tuple[str | None, str]:
    """The Ray auth token and where it came from (for messages; the token itself is never shown)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip(), "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ClusterError(f"RAY_AUTH_TOKEN_PATH names {p}, which is not a file; point it at the cluster's token file")
        return p.read_text().strip(), f"RAY_AUTH_TOKEN_PATH ({p})"
    p = Path.home() / ".ray" / "auth_token"
    if p.is_file():
        return p.read_text().strip(), str(p)
    return None, ""


def client(address: str):
    """A JobSubmissionClient for ``address`` (http://HEAD:8265), with the auth token when there is one."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    token, source = _token()
    headers = {"Authorization": f"Bearer {token}"} if token else None
    # Ray lets RAY_ADDRESS / RAY_API_SERVER_ADDRESS override the address given: an explicit --address wins here
    hidden = {k: os.environ.pop(k) for k in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS") if address and k in os.environ}
    try:
        return JobSubmissionClient(address, headers=headers)
    except AuthenticationError as e:
        raise ClusterError(_auth_message(address, source)) from e
    except ConnectionError as e:
        raise ClusterError(f"no Ray Jobs API at {address}; check the head is up (`ray status` on it) and that the "
                           "address is the dashboard's, http://HEAD:8265") from e
    finally:
        os.environ.update(hidden)


def _auth_message(address: str, source: str) -> str:
    if not source:
        return (f"the Ray head at {address} requires an auth token; set RAY_AUTH_TOKEN_PATH to a copy of the head's "
                "~/.ray/auth_token (or RAY_AUTH_TOKEN; `ray get-auth-token` on the head shows it)")
    return (f"the Ray head at {address} rejected the auth token from {source}; use the token of that cluster "
            "(its ~/.ray/auth_token)")


def call(address: str, fn):
    """Run ``fn()`` (a client call), turning authentication failures into one sentence."""
    from ray.exceptions import AuthenticationError

    try:
        return fn()
    except AuthenticationError as e:
        raise ClusterError(_auth_message(address, _token()[1])) from e
    except RuntimeError as e:  # the Jobs API's answer to an unknown job id, among others
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "does not exist" in first or "404" in first:
            raise ValueError(f"no such job on {address} ({first}); `matalu jobs list` shows the job ids") from e
        raise ClusterError(f"the Ray Jobs API at {address} answered: {first}") from e


def _submit_with_retry(c, entry: str, runtime_env: dict, wait_s: float = 120.0) -> str:
    """Submit, waiting while a freshly started head has no job agent yet ("No available agent")."""
    import time

    deadline = time.monotonic() + wait_s
    delay = 1.0
    while True:
        try:
            return c.submit_job(entrypoint=entry, runtime_env=runtime_env)
        except RuntimeError as e:
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise
            print("[submit] the head's job agent is not up yet; retrying", flush=True)
            time.sleep(delay)
            delay = min(delay * 1.5, 10.0)


def follow_logs(c, job_id: str) -> None:
    async def follow() -> None:
        async for lines in c.tail_job_logs(job_id):
            sys.stdout.write(lines)
            sys.stdout.flush()

    asyncio.run(follow())


def submit(address: str, argv: list[str], *, python: str | None = None, wait: bool = True,
           resources: str = "", allow_local_paths: bool = False) -> int:
    from ray.job_submission import JobStatus

    if not argv:
        raise ValueError("name the subcommand to run, e.g. `matalu submit ingest --out s3://… --address http://HEAD:8265`")
    args = shared_args(argv, address, allow_local_paths)
    env = {}
    if resources:
        parse_resources(resources)  # a bad spec fails here, not on the cluster
        env[RESOURCES_ENV] = resources
    if python is None:  # a head on this machine runs this interpreter; a cluster's nodes their own (cluster.yaml)
        python = sys.executable if is_local_head(address) else "python"
    c = client(address)
    entry = shlex.join([python, "-m", "matalu", *args])
    runtime_env: dict = {"working_dir": str(REPO_ROOT), "excludes": EXCLUDES}
    if env:
        runtime_env["env_vars"] = env
    job_id = call(address, lambda: _submit_with_retry(c, entry, runtime_env))
    print(f"[submit] job {job_id} on {address}: matalu {shlex.join(args)}", flush=True)
    if not wait:
        print(f"[submit] follow it with: matalu jobs logs {job_id} --follow --address {address}")
        return 0
    follow_logs(c, job_id)
    status = c.get_job_status(job_id)
    print(f"[submit] job {job_id} finished: {status}", flush=True)
    return 0 if status == JobStatus.SUCCEEDED else 1
