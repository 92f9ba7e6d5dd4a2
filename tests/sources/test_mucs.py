"""MUCS 2021 Telugu recipe: a user-supplied tar.gz in the published layout (with a top folder), broken lines."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from manifests.rows import Recording, Reject
from pipelines.sources import mucs
from pipelines.sources.common import MissingArchive
from tests import httpserver as _httpserver
from tests.audio import telugu_speech, write_as
from tests.conftest import ingest_source

http_server = _httpserver.http_server  # the fixture, used by name below

TRAIN = {
    "0000010001": "ఈ రోజు ఆకాశం మబ్బుగా ఉంది",
    "0000010002": "నేను రేపు బడికి వెళ్తాను",
    "0000010003": "మా ఊరిలో పెద్ద చెరువు ఉంది",
}
TEST = {"0000090001": "సాయంత్రానికి చిన్న వాన పడే అవకాశం ఉంది"}
TRAIN_LINES = [
    f"0000010001 {TRAIN['0000010001']}",
    f"0000010002\t{TRAIN['0000010002']}",  # a tab is whitespace too
    "0000010008",  # no text: bad_line (line 3)
    f"0000010003 {TRAIN['0000010003']}",
    "0000010009 ఈ ఆడియో ఫైలు లేదు",  # listed, no WAV: missing_audio
    "",
]
TEST_LINES = [f"0000090001 {TEST['0000090001']}"]
UNLISTED = "0000090005"  # a test WAV with no transcript line: no_transcript


@pytest.fixture(scope="module")
def archive_bytes(tmp_path_factory) -> bytes:
    d = tmp_path_factory.mktemp("mucs_audio")
    members: dict[str, bytes] = {}
    top = "mucs2021_telugu/Telugu"
    for split, utts in (("train", TRAIN), ("test", {**TEST, UNLISTED: "ఇది ఒక పరీక్ష వాక్యం"})):
        for utt, text in utts.items():
            members[f"{top}/{split}/audio/{utt}.wav"] = write_as(d / f"{utt}.wav", telugu_speech(text, sr=16000),
                                                                 16000).read_bytes()
    members[f"{top}/train/transcription.txt"] = "\n".join(TRAIN_LINES).encode()
    members[f"{top}/test/transcription.txt"] = ("\n".join(TEST_LINES) + "\n").encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name in sorted(members):
            ti = tarfile.TarInfo(name)
            ti.size = len(members[name])
            tf.addfile(ti, io.BytesIO(members[name]))
    return buf.getvalue()


def _check(rows):
    recs = [r for r in rows if isinstance(r, Recording)]
    rejects = [r for r in rows if isinstance(r, Reject)]
    want = {f"train-{u}": ("train", t) for u, t in TRAIN.items()} | {f"test-{u}": ("test", t) for u, t in TEST.items()}
    assert [r.recording_id for r in recs] == sorted(want)
    for r in recs:
        assert (r.split, r.text) == want[r.recording_id]
        assert r.speaker_id == "" and r.language == "te" and r.source == "mucs" and r.member == ""
        assert r.license == "MUCS-2021 (research use; see the MSR Open Data terms)"
        assert Path(r.uri).is_absolute() and Path(r.uri).is_file()
    got = {(r.reason, r.recording_id or r.item) for r in rejects}
    assert got == {("bad_line", "extracted/mucs_telugu/mucs2021_telugu/Telugu/train/transcription.txt:3"),
                   ("missing_audio", "train-0000010009"), ("no_transcript", f"test-{UNLISTED}")}
    assert all(r.stage == "prepare" and r.detail for r in rejects)


def test_missing_archive_says_what_to_do(tmp_path):
    with pytest.raises(MissingArchive) as e:
        mucs.download(tmp_path / "mucs")
    msg = str(e.value)
    for needle in ("msropendata.com", "OpenSLR 103", "NO Telugu", "matalu ingest --source mucs --archive PATH",
                   "Telugu/{train,test}"):
        assert needle in msg, needle
    with pytest.raises(FileNotFoundError, match="no such file"):
        mucs.download(tmp_path / "mucs", archive=str(tmp_path / "nope.tar.gz"))


def test_local_path_then_rerun_without_archive(archive_bytes, tmp_path):
    arch = tmp_path / "mucs_telugu.tar.gz"
    arch.write_bytes(archive_bytes)
    target = tmp_path / "src" / "mucs"
    assert mucs.download(target, archive=str(arch), progress=False) == target
    _check(list(mucs.prepare(target)))
    # later runs need no --archive: the finished download is reused
    assert mucs.download(target, progress=False) == target
    _check(list(mucs.prepare(target)))
    # an extracted folder is used in place
    there = mucs.download(tmp_path / "inplace", archive=str(target / "extracted" / "mucs_telugu"), progress=False)
    assert len([r for r in mucs.prepare(there) if isinstance(r, Recording)]) == len(TRAIN) + len(TEST)


def test_archive_url(http_server, archive_bytes, tmp_path):
    import hashlib

    url = http_server.add("mucs_telugu.tar.gz", archive_bytes)
    target = tmp_path / "mucs"
    pins = {"mucs_telugu.tar.gz": hashlib.sha256(archive_bytes).hexdigest()}
    mucs.download(target, archive=url, sha256=pins, progress=False)
    _check(list(mucs.prepare(target)))
    n = http_server.count()
    mucs.download(target, archive=url, sha256=pins, progress=False)
    assert http_server.count() == n


def test_not_telugu_archive(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        data = b"0001 text\n"
        ti = tarfile.TarInfo("Tamil/train/transcription.txt")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    (tmp_path / "tamil.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(FileNotFoundError, match="MUCS 2021 Telugu archive"):
        mucs.download(tmp_path / "mucs", archive=str(tmp_path / "tamil.tar.gz"), progress=False)


def test_ingest_end_to_end(ray_session, archive_bytes, tmp_path):
    arch = tmp_path / "mucs_telugu.tar.gz"
    arch.write_bytes(archive_bytes)
    recs, samples, rejects = ingest_source(tmp_path, "mucs", {"archive": str(arch)})
    want = {f"train-{u}": t for u, t in TRAIN.items()} | {f"test-{u}": t for u, t in TEST.items()}
    assert sorted(r.recording_id for r in recs) == sorted(want)
    for rid, text in want.items():
        mine = [s for s in samples if s.recording_id == rid]
        assert len(mine) == 1, (rid, mine)
        assert mine[0].text == text and mine[0].speakers == [] and mine[0].split == rid.split("-")[0]
        assert mine[0].license.startswith("MUCS-2021") and mine[0].source == "mucs"
    assert {r.reason for r in rejects if r.stage == "prepare"} == {"bad_line", "missing_audio", "no_transcript"}
