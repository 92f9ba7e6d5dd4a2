"""`matalu submit encode` / `lm train` and `matalu jobs …` against a Ray head on 127.0.0.1; the Ray auth token
and the AWS secret of the submitting environment appear in no output: not in the job's files, metadata, logs, nor in
what the commands print.

The head runs with RAY_AUTH_MODE=disabled: on this machine a token-mode head's raylet aborts at start-up
(``node_manager.cc:3588 Check failed``, seen twice). Token handling is tested against a stand-in Jobs API on
127.0.0.1 that answers as a token head's dashboard does (checked by hand against a real one: 401 "Unauthorized:
Missing authentication token" without a token, 403 "Forbidden: Invalid authentication token" with a wrong one)."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import FAKE_SECRET


@pytest.fixture()
def token_head(jobs_head):
    token = secrets.token_hex(32)  # sent by the clients (RAY_AUTH_TOKEN); this head (auth disabled) ignores it
    return jobs_head[0], token, jobs_head[1]

def matalu(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "matalu", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "RAY_ADDRESS": "", **(env or {})})


class _TokenJobsApi(BaseHTTPRequestHandler):
    """A token head's Jobs API as far as the clients see it: 401 / 403 / the answer, by the Authorization header."""

    token = ""
    seen: list = []

    def log_message(self, *a) -> None:
        pass

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization", "")
        type(self).seen.append(auth)
        if not auth:
            code, body = 401, b"Unauthorized: Missing authentication token"
        elif auth != f"Bearer {self.token}":
            code, body = 403, b"Forbidden: Invalid authentication token"
        else:
            code = 200
            body = json.dumps({"ray_version": "2.60.0", "version": "4", "ray_commit": "x"} if self.path == "/api/version"
                              else []).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_auth_token_sent_never_printed_and_missing_is_one_sentence(tmp_path):
    token = secrets.token_hex(32)
    _TokenJobsApi.token = token
    _TokenJobsApi.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenJobsApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"http://127.0.0.1:{server.server_address[1]}"
    env = {"HOME": str(tmp_path), "RAY_AUTH_TOKEN": "", "RAY_AUTH_TOKEN_PATH": ""}  # no ~/.ray/auth_token either
    try:
        for args in (["jobs", "--address", address, "list"], ["submit", "sources", "list", "--address", address]):
            r = matalu(*args, env=env, timeout=120)
            assert r.returncode == 2, r.stdout + r.stderr
            err = r.stderr.strip()
            assert len(err.splitlines()) == 1, err
            assert "requires an auth token; set RAY_AUTH_TOKEN_PATH" in err
        r = matalu("jobs", "--address", address, "list", env={**env, "RAY_AUTH_TOKEN": "0" * 64}, timeout=120)
        assert r.returncode == 2 and "rejected the auth token from RAY_AUTH_TOKEN" in r.stderr
        # the token from a file (RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token as cluster.yaml copies it)
        (tmp_path / ".ray").mkdir()
        (tmp_path / ".ray" / "auth_token").write_text(token + "\n")
        ok = matalu("jobs", "--address", address, "list", env=env, timeout=120)
        assert ok.returncode == 0 and ok.stdout.startswith("ID"), ok.stdout + ok.stderr
        assert f"Bearer {token}" in _TokenJobsApi.seen
        for out in (r.stdout, r.stderr, ok.stdout, ok.stderr):
            assert token not in out
    finally:
        server.shutdown()


def test_local_paths_refused_for_a_remote_head(tmp_path):
    r = matalu("submit", "ingest", "--out", str(tmp_path / "out"), "--address", "http://10.0.0.5:8265", timeout=60)
    assert r.returncode == 2
    assert "is a path on this machine, which the cluster's nodes cannot read; pass an s3:// URI" in r.stderr
    from matalu.submit import REPO_ROOT, shared_args

    remote = "http://head.example:8265"
    assert shared_args(["ingest", "--out", "s3://b/x", "--config", str(REPO_ROOT / "configs/ingest.yaml")], remote) \
        == ["ingest", "--out", "s3://b/x", "--config", "configs/ingest.yaml"]  # travels in the working_dir
    with pytest.raises(ValueError, match="outside the checkout"):
        shared_args(["ingest", "--config", str(tmp_path / "my.yaml")], remote)
    assert shared_args(["encode", "--segments=/mnt/efs/seg"], remote, allow_local_paths=True) == \
        ["encode", "--segments=/mnt/efs/seg"]
    assert shared_args(["ingest", "--out", "rel"], "http://127.0.0.1:8265")[2] == str(Path("rel").resolve())


def test_submit_encode_and_lm_train_then_jobs(token_head, one_mono_shard, tmp_path):
    import torch

    from codec.model import CodecConfig, CodecModel
    from codec.train import CodecTrainConfig, save_checkpoint

    address, token, temp = token_head
    torch.manual_seed(0)
    ck = tmp_path / "codec"
    save_checkpoint(str(ck), CodecModel(CodecConfig.preset("tiny")).eval(), None, 0, CodecTrainConfig(size="tiny"))
    env = {"RAY_AUTH_TOKEN": token, "AWS_SECRET_ACCESS_KEY": FAKE_SECRET}
    out = tmp_path / "enc"
    r = matalu("submit", "encode", "--segments", str(one_mono_shard), "--codec", str(ck), "--out", str(out),
               "--num-workers", "1", "--cpu", "--address", address, env=env)
    printed = r.stdout + r.stderr
    assert r.returncode == 0, printed[-4000:]
    assert "SUCCEEDED" in r.stdout and "Tokens:" in r.stdout  # the job's own output, followed
    job_id = re.search(r"\[submit\] job (\S+) on", r.stdout).group(1)
    assert list(out.rglob("_SUCCESS"))

    # the LM trained on those tokens, as a Ray Train run inside a job (not followed; then `jobs logs --follow`)
    r2 = matalu("submit", "lm", "train", "--data", str(out), "--out", str(tmp_path / "lm"), "--size", "tiny",
                "--steps", "2", "--num-workers", "1", "--no-wait", "--address", address, env=env)
    assert r2.returncode == 0, r2.stdout + r2.stderr
    train_id = re.search(r"\[submit\] job (\S+) on", r2.stdout).group(1)
    r3 = matalu("jobs", "--address", address, "logs", train_id, "--follow", env=env)
    assert r3.returncode == 0 and "[lm] done" in r3.stdout, (r3.stdout + r3.stderr)[-4000:]
    assert (tmp_path / "lm" / "checkpoints" / "latest.json").exists()

    ls = matalu("jobs", "--address", address, "list", env=env)
    assert ls.returncode == 0
    rows = {line.split()[0]: line for line in ls.stdout.splitlines()[1:]}
    assert "SUCCEEDED" in rows[job_id] and "matalu encode --segments" in rows[job_id]
    st = matalu("jobs", "--address", address, "status", job_id, env=env)
    assert st.stdout.startswith(f"{job_id}: SUCCEEDED")
    logs = matalu("jobs", "--address", address, "logs", job_id, env=env)
    assert "Tokens:" in logs.stdout
    stop = matalu("jobs", "--address", address, "stop", job_id, env=env)
    assert "not running" in stop.stdout
    bad = matalu("jobs", "--address", address, "status", "raysubmit_nope", env=env)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1

    # neither the token nor the secret anywhere: printed output, job metadata, job logs, output files
    from matalu.submit import client

    os.environ["RAY_AUTH_TOKEN"] = token
    try:
        c = client(address)
        meta = " ".join(repr(c.get_job_info(j)) for j in (job_id, train_id))
    finally:
        del os.environ["RAY_AUTH_TOKEN"]
    texts = [printed, r2.stdout, r2.stderr, r3.stdout, ls.stdout, st.stdout, logs.stdout, meta]
    files = [p for d in (out, tmp_path / "lm") for p in d.rglob("*") if p.is_file()]
    files += [p for p in (temp / "session_latest" / "logs").glob("job-driver-*") if p.is_file()]
    assert files
    for blob in texts + [p.read_bytes().decode("latin-1") for p in files]:
        assert FAKE_SECRET not in blob and token not in blob
