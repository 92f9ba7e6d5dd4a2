"""The unit job runner's commit rules, without Ray: parts, _DONE, and which shards a redo may remove."""

from __future__ import annotations

import json

from jobs.runner import commit_unit, parts_uri, unit_done
from manifests.io import read_rows
from manifests.rows import Shard


def _shard(root, name: str) -> str:
    p = root / "segments" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"tar")
    return str(p)


def _row(uri: str) -> Shard:
    return Shard(uri=uri, kind="segments", sample_kind="mono", source="s", unit="u", n_samples=1, seconds=1.0, bytes=3,
                 sha256="0" * 64)


def test_commit_writes_parts_then_done_and_a_redo_removes_only_its_own_stale_shards(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a0, a1 = _shard(a, "u-000.tar"), _shard(a, "u-001.tar")
    commit_unit(str(a), "u", "fp1", "run1", {"shards": ([_row(a0), _row(a1)], Shard)}, [a0, a1])
    done = json.loads((a / "manifests" / "parts" / "u" / "_DONE").read_text())
    assert done == {"fingerprint": "fp1", "run_id": "run1", "shards": [a0, a1]}
    assert [s.uri for s in read_rows(f"{parts_uri(str(a), 'u')}/shards.parquet", Shard)] == [a0, a1]
    assert unit_done(str(a), "u", "fp1") and not unit_done(str(a), "u", "fp2")

    # a copy of the output (its _DONE still names a's shards) redone with other settings keeps a's files
    b.mkdir()
    (b / "manifests" / "parts" / "u").mkdir(parents=True)
    (b / "manifests" / "parts" / "u" / "_DONE").write_text(json.dumps(done))
    b0 = _shard(b, "u-000.tar")
    commit_unit(str(b), "u", "fp2", "run2", {"shards": ([_row(b0)], Shard)}, [b0])
    assert (a / "segments" / "u-001.tar").exists() and (a / "segments" / "u-000.tar").exists()

    # the same output redone producing fewer shards: the one it no longer writes is removed
    commit_unit(str(a), "u", "fp2", "run3", {"shards": ([_row(a0)], Shard)}, [a0])
    assert (a / "segments" / "u-000.tar").exists() and not (a / "segments" / "u-001.tar").exists()
    assert unit_done(str(a), "u", "fp2")
    (a / "segments" / "u-000.tar").unlink()
    assert not unit_done(str(a), "u", "fp2")  # a listed shard that is gone: the unit is redone
