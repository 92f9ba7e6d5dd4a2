"""An ingest that would commit nothing fails with a sentence unless --allow-empty; bad listings end in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from manifests.rows import Reject
from matalu.cli import main
from pipelines.empty import empty_output_message


def _ingest(tmp_path: Path, listing: Path, *extra: str) -> int:
    return main(["ingest", "--source", "manifest", "--manifest", str(listing), "--out", str(tmp_path / "out"),
                 "--sources-dir", str(tmp_path / "src"), "--no-progress", *extra])


@pytest.mark.parametrize("content, why", [
    ("", "lists nothing"),
    ("path,text,speaker,license\n", "lists nothing"),
    ("\ufeffpath,text\n\n,no path\n", "all 1 of its lines/files were rejected (1 bad_line; the first: l.csv:3"),
])
def test_empty_listing_fails_unless_allowed(tmp_path, capsys, content, why):
    listing = tmp_path / "l.csv"
    listing.write_text(content, encoding="utf-8")
    assert _ingest(tmp_path, listing) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("matalu ingest: error: source manifest gave no recordings: ") and why in err
    assert "--allow-empty" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out" / "_SUCCESS").exists()

    assert _ingest(tmp_path, listing, "--allow-empty") == 0  # on purpose: an empty, committed dataset
    assert (tmp_path / "out" / "_SUCCESS").exists()


@pytest.mark.parametrize("content, message", [
    ("a.wav,hi,s1,CC0\n", "the header has no audio path column (found 'a.wav', 'hi', 's1', 'CC0'; accepted names: "
                          "path, audio"),
    ("path,text\nb.wav,caf\xe9\n", "l.csv line 2 is not UTF-8"),
])
def test_unusable_listing_is_one_line(tmp_path, capsys, content, message):
    listing = tmp_path / "l.csv"
    listing.write_bytes(content.encode("latin-1"))
    assert _ingest(tmp_path, listing) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("matalu ingest: error: l.csv") and message in err and len(err.splitlines()) == 1


def test_zero_samples_message():
    rejects = [Reject(item="a", stage="vad", reason="no_speech", detail="x"),
               Reject(item="b", stage="vad", reason="no_speech", detail="y"),
               Reject(item="c", stage="decode", reason="truncated", detail="z")]
    msg = empty_output_message(0, 3, rejects)
    assert msg == ("no samples from 3 recordings (rejects: 2 no_speech, 1 truncated): nothing to commit; see "
                   "manifests/rejects.parquet for why, or pass --allow-empty (allow_empty: true in the config) to "
                   "commit an empty dataset on purpose")
    assert empty_output_message(0, 3, rejects, allow_empty=True) is None
    assert empty_output_message(5, 3, rejects) is None


def test_zero_samples_do_not_commit_unless_allowed(ray_session, tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    sf.write(tmp_path / "silence.wav", np.zeros(3 * 16000, np.float32), 16000, subtype="PCM_16")
    listing = tmp_path / "l.tsv"
    listing.write_text("path\ttext\nsilence.wav\tనమస్తే\n", encoding="utf-8")
    assert _ingest(tmp_path, listing) == 1
    cap = capsys.readouterr()
    assert "no samples from 1 recordings (rejects: 1 no_speech): nothing to commit" in cap.out
    assert not (tmp_path / "out" / "_SUCCESS").exists()
    assert _ingest(tmp_path, listing, "--allow-empty") == 0  # the unit is already done: only the commit runs
    assert (tmp_path / "out" / "_SUCCESS").exists()
