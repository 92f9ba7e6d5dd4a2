"""A full disk leaves no temp files or orphan shard parts behind, and is reported as one sentence with its path."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

import storage
from storage import shards
from storage import uri as U
from storage.errors import no_space_message, no_space_path


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_atomic_write_cleans_up_and_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(U.os, "fsync", _enospc)
    target = tmp_path / "out" / "manifests" / "samples.parquet"
    with pytest.raises(OSError) as e:
        storage.write_bytes(str(target), b"x" * 1000)
    assert e.value.errno == errno.ENOSPC and no_space_path(e.value) == str(target)
    assert _files(tmp_path) == []


def test_cross_device_put_file_removes_its_temp_copy(tmp_path, monkeypatch):
    src = tmp_path / "part.tar"
    src.write_bytes(b"y" * (3 << 20))
    dst = tmp_path / "out" / "segments" / "s-00000-000.tar"
    real_replace, real_fdopen = os.replace, os.fdopen

    def replace(a, b):  # the shard's temp dir is on another filesystem
        if Path(a) == src:
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        return real_replace(a, b)

    class Full:  # the target filesystem fills up after the first MiB
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, b):
            self.n += len(b)
            if self.n > (1 << 20):
                _enospc()
            return self.f.write(b)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(U.os, "replace", replace)
    monkeypatch.setattr(U.os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    with pytest.raises(OSError) as e:
        storage.put_file(src, str(dst))
    assert no_space_path(e.value) == str(dst)
    assert _files(tmp_path / "out") == []  # no .s-00000-000.tar.XXXX.tmp left to fill the disk further
    assert src.exists()  # the caller's file is the caller's to clean (the shard writer's temp dir)


def test_shard_writer_failure_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    real_put = U.put_file

    def put(local, uri):
        calls.append(uri)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), uri)
        real_put(local, uri)

    monkeypatch.setattr(shards, "put_file", put)
    tmp_root = tmp_path / "tmp"
    tmp_root.mkdir()
    out = tmp_path / "out"
    w = storage.ShardWriter(lambda i: str(out / f"u-{i:03d}.tar"), max_samples=1, tmp_dir=str(tmp_root))
    with pytest.raises(OSError):
        with w:
            for k in ("a", "b", "c"):
                w.write(k, {"json": b"{}"})
    assert len(calls) == 2
    assert _files(out) == [] and list(tmp_root.iterdir()) == []  # the committed first part went too


def test_no_space_sentence_from_exception_chain_and_from_unit_error_text():
    err = OSError(errno.ENOSPC, "No space left on device", "/data/out/segments/s/mono/s-00003-000.tar")
    try:
        try:
            raise err
        except OSError as inner:
            raise RuntimeError("unit failed") from inner
    except RuntimeError as outer:
        assert no_space_path(outer) == err.filename
    text = f"OSError: {err}"  # what jobs.runner.run_unit puts in a failed unit's summary
    assert no_space_path(text) == err.filename
    assert no_space_path("OSError: [Errno 122] Disk quota exceeded") == ""
    assert no_space_path("ValueError: bad") is None and no_space_path(OSError(errno.EIO, "io")) is None
    assert no_space_message(err.filename, 3, 5) == (
        "no space left on /data/out/segments/s/mono: 3 units committed, 5 not; free space and rerun")


@pytest.fixture()
def tiny_disk(tmp_path):
    """A 512 KiB tmpfs (needs root; skipped elsewhere: the monkeypatched tests above cover the same paths)."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)],
                                            capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_real_full_disk_shards_and_manifests(tiny_disk, tmp_path):
    w = storage.ShardWriter(lambda i: str(tiny_disk / "segments" / f"u-{i:03d}.tar"), max_bytes=300_000,
                            tmp_dir=str(tmp_path))
    with pytest.raises(OSError) as e:
        with w:
            for i in range(8):
                w.write(f"k{i}", {"flac": os.urandom(100_000)})
    assert no_space_path(e.value).startswith(str(tiny_disk / "segments"))
    assert _files(tiny_disk) == [] and [p for p in tmp_path.iterdir() if p.name.startswith("matalu-shard-")] == []
    with pytest.raises(OSError) as e:
        storage.write_bytes(str(tiny_disk / "manifests" / "samples.parquet"), os.urandom(600_000))
    assert no_space_path(e.value) == str(tiny_disk / "manifests" / "samples.parquet")
    assert _files(tiny_disk) == []


def test_ingest_onto_a_full_disk_says_so_in_one_line_and_leaves_no_temp_files(tiny_disk, ray_session, synthetic_small):
    """The whole job on a 512 KiB disk: units fail with ENOSPC; the run ends with one sentence naming the disk and
    the units committed and not, and no temp file is left to fill the disk further."""
    from pipelines.ingest import run_ingest
    from storage.errors import StorageError
    from tests.conftest import small_config

    said: list[str] = []
    cfg = small_config(tiny_disk / "out", synthetic_small)
    try:
        res = run_ingest(cfg, progress=False, say=said.append)
        line = next(s for s in said if "no space left on" in s and "units committed" in s)
        assert not res.committed and res.units_failed
    except StorageError as e:  # the manifests themselves could not be written
        line = str(e)
    assert "units committed" in line and "free space and rerun" in line and str(tiny_disk) in line
    assert not any("Traceback" in s for s in said)
    assert not (tiny_disk / "out" / "_SUCCESS").exists()
    assert [p for p in tiny_disk.rglob("*") if p.name.endswith(".tmp")] == []
