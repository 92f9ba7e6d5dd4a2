"""A real Ray head (`ray start --head`) on 127.0.0.1 for the tests that talk to a cluster's Jobs API."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from tests.conftest import free_port


@contextlib.contextmanager
def start_head(tag: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, Path]]:
    """Start a head with its own ports (the test session's Ray shares the machine), wait until `ray start --block`
    says the runtime started and the Jobs API answers, yield ``(dashboard address, temp dir)``, stop it after."""
    port, dash = free_port(), free_port()
    temp = Path("/tmp") / f"ray{tag}{os.getpid()}"  # short: Ray's socket paths must stay under 107 bytes
    env = {**os.environ, "RAY_ADDRESS": "", "RAY_AUTH_MODE": "disabled",
           "RAY_raylet_start_wait_time_s": "120", "RAY_agent_register_timeout_ms": "120000",  # slow starts under load
           **(env or {})}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
         "--port", str(port), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
         "--include-dashboard", "true", "--num-cpus", "2", "--temp-dir", str(temp), "--disable-usage-stats",
         "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
         "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port()),
         "--ray-client-server-port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    address = f"http://127.0.0.1:{dash}"
    lines: list[str] = []  # `ray start --block` says "Ray runtime started" once the node is fully up
    threading.Thread(target=lambda: lines.extend(x.decode(errors="replace") for x in proc.stdout), daemon=True).start()
    try:
        deadline = time.time() + 240
        while not any("Ray runtime started" in x for x in lines):
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("ray start failed:\n" + "".join(lines)[-3000:])
            time.sleep(0.5)
        while True:  # and the Jobs API answers (a token head answers 401 without the token)
            try:
                with urllib.request.urlopen(f"{address}/api/version", timeout=2):
                    break
            except OSError as e:
                if getattr(e, "code", None):
                    break
                if time.time() > deadline:
                    raise RuntimeError(f"the head's Jobs API at {address} did not answer in 240 s") from e
                time.sleep(1)
        yield address, temp
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # a throwaway head: no clean shutdown to wait for
        proc.wait(timeout=30)
