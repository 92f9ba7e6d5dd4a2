"""The web page under hostile input: huge offsets are 400s, shards outside the dataset are not served unless told,
a busy port is one sentence, and SIGTERM cleans up like Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pytest

from manifests.io import manifest_uri, read_table, table_bytes
from manifests.web import ManifestServer
from matalu.cli import main
from tests.manifests.manifests_web_helpers import get_json, http, running

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", ["/api/samples?offset=99999999999999999999999", "/api/shards?offset=99999999999999999999999",
                                  "/api/samples?limit=-99999999999999999999999", "/api/shards?offset=abc",
                                  "/api/hist?bins=99999999999999999999999"])
def test_out_of_range_numbers_are_400(ingested, path):
    cfg, _ = ingested
    with running(cfg.out) as srv:
        status, body = get_json(srv.url.rstrip("/") + path)
    assert status == 400 and ("must be between" in body["error"] or "must be an integer" in body["error"]), body


def _moved_shard_run(ingested, tmp_path: Path, how: str) -> tuple[str, str]:
    """A copy of the run whose first shard's samples point outside the run (``how``: 'abs' path or '..' path)."""
    cfg, _ = ingested
    run = tmp_path / "run"
    shutil.copytree(cfg.out, run)
    t = read_table(manifest_uri(str(run), "samples"))
    shards = t.column("shard").to_pylist()
    # a shard the copy holds (another test's rerun into a copy of this run may have removed the original's files)
    first = next(u for u in sorted(set(shards)) if (run / "segments" / u.split("/segments/", 1)[1]).exists())
    local = run / "segments" / first.split("/segments/", 1)[1]
    outside = tmp_path / "elsewhere" / local.name
    outside.parent.mkdir()
    shutil.move(local, outside)  # the dataset no longer holds it: only the outside copy exists
    new = str(outside) if how == "abs" else f"{run}/segments/../../elsewhere/{local.name}"
    t = t.set_column(t.schema.get_field_index("shard"), "shard",
                     pa.array([new if s == first else s.replace(str(cfg.out), str(run)) for s in shards]))
    Path(manifest_uri(str(run), "samples")).write_bytes(table_bytes(t))
    sid = t.column("sample_id").to_pylist()[shards.index(first)]
    return str(run), sid


@pytest.mark.parametrize("how", ["abs", "dotdot"])
def test_shard_outside_dataset_is_not_served_unless_allowed(ingested, tmp_path, how):
    run, sid = _moved_shard_run(ingested, tmp_path, how)
    with running(run) as srv:
        status, _, body = http(f"{srv.url}api/audio/{sid}.wav")
        assert status == 403 and b"outside the dataset root" in body and b"--allow-outside-root" in body
        ok = [r for r in get_json(f"{srv.url}api/samples?limit=500")[1]["rows"] if r["sample_id"] != sid][0]
        assert http(f"{srv.url}api/audio/{ok['sample_id']}.wav")[0] == 200  # shards inside are served as before
    with running(run, allow_outside_root=True) as srv:
        status, headers, body = http(f"{srv.url}api/audio/{sid}.wav")
        assert status == 200 and body[:4] == b"RIFF"


def _leftovers(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith("matalu-manifests-"))


def test_port_in_use_is_one_sentence(ingested, tmp_path, capsys, monkeypatch):
    cfg, _ = ingested
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ValueError, match=rf"port {port} on 127.0.0.1 is already in use.*--port N, or --port 0"):
            ManifestServer(cfg.out, "127.0.0.1", port)
        assert main(["manifests", "serve", cfg.out, "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"matalu manifests: error: port {port}") and len(err.splitlines()) == 1
    assert _leftovers(tmp_path) == []  # the DuckDB files of the server that could not start are gone


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signals_remove_the_temporary_database(ingested, tmp_path, sig):
    cfg, _ = ingested
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "matalu", "manifests", "serve", cfg.out, "--port", "0"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = ""
        deadline = time.monotonic() + 60
        while "serving on" not in line and time.monotonic() < deadline:
            line = p.stdout.readline()
        assert "serving on" in line, p.stderr.read() if p.poll() is not None else line
        assert _leftovers(tmp_path)  # the DuckDB file exists while serving
        p.send_signal(sig)
        rc = p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert rc == 0 and _leftovers(tmp_path) == [], p.stderr.read()
