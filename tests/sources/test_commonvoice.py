"""Common Voice Telugu recipe: a user-supplied cv-corpus tarball (MP3 clips + TSVs) with broken rows."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from manifests.rows import Recording, Reject
from pipelines.sources import commonvoice
from pipelines.sources.common import MissingArchive
from tests import httpserver as _httpserver
from tests.audio import telugu_speech, write_as
from tests.conftest import ingest_source

http_server = _httpserver.http_server  # the fixture, used by name below

TOP = "cv-corpus-17.0-2024-03-15/te"
HEADER = "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment"
SPK_A, SPK_B = "a" * 64, "b" * 64
# clip id -> (client_id, sentence, up, down, gender as written)
CLIPS = {
    "common_voice_te_30000001": (SPK_A, "ఈ రోజు ఆకాశం మబ్బుగా ఉంది", 2, 0, "male_masculine"),
    "common_voice_te_30000002": (SPK_A, '"నమస్కారం" అని అతను అన్నాడు', 3, 1, "male_masculine"),  # quotes: QUOTE_NONE
    "common_voice_te_30000003": (SPK_B, "మా ఊరిలో పెద్ద చెరువు ఉంది", 2, 0, "female_feminine"),
    "common_voice_te_30000004": (SPK_B, "నేను రేపు బడికి వెళ్తాను", 1, 0, "female"),
}
GENDER = {"male_masculine": "male", "female_feminine": "female", "female": "female"}


def _row(cid: str, client: str, text: str, up: int, down: int, gender: str) -> str:
    return f"{client}\t{cid}.mp3\tsid{cid[-2:]}\t{text}\t\t{up}\t{down}\tthirties\t{gender}\t\t\tte\t"


@pytest.fixture(scope="module")
def archive_bytes(tmp_path_factory) -> bytes:
    d = tmp_path_factory.mktemp("cv_audio")
    members: dict[str, bytes] = {}
    for cid, (_, text, *_rest) in CLIPS.items():
        members[f"{TOP}/clips/{cid}.mp3"] = write_as(d / f"{cid}.mp3", telugu_speech(text, sr=48000), 48000).read_bytes()
    validated = [HEADER] + [_row(cid, *v) for cid, v in CLIPS.items()]
    validated += [
        _row("common_voice_te_30000009", SPK_B, "ఈ క్లిప్ టార్‌లో లేదు", 2, 0, ""),  # missing clip (line 6)
        f"{SPK_A}\tcommon_voice_te_30000010.mp3\tsid10\tతక్కువ నిలువు వరుసలు",  # too few fields (line 7)
        _row("common_voice_te_30000011", SPK_A, "ట్యాబ్\tఉన్న వాక్యం", 2, 0, ""),  # a tab in the text (line 8)
    ]
    members[f"{TOP}/validated.tsv"] = ("\n".join(validated) + "\n").encode()
    ids = list(CLIPS)
    members[f"{TOP}/train.tsv"] = ("\n".join([HEADER] + [_row(c, *CLIPS[c]) for c in ids[:2]]) + "\n").encode()
    members[f"{TOP}/dev.tsv"] = ("\n".join([HEADER, _row(ids[2], *CLIPS[ids[2]])]) + "\n").encode()
    members[f"{TOP}/test.tsv"] = ("\n".join([HEADER, _row(ids[3], *CLIPS[ids[3]])]) + "\n").encode()
    members[f"{TOP}/invalidated.tsv"] = (HEADER + "\n").encode()
    members[f"{TOP}/other.tsv"] = (HEADER + "\n").encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name in sorted(members):
            ti = tarfile.TarInfo(name)
            ti.size = len(members[name])
            tf.addfile(ti, io.BytesIO(members[name]))
    return buf.getvalue()


def _split(rows):
    return [r for r in rows if isinstance(r, Recording)], [r for r in rows if isinstance(r, Reject)]


def _check_validated(rows):
    recs, rejects = _split(rows)
    assert [r.recording_id for r in recs] == sorted(CLIPS)
    for r in recs:
        client, text, _, _, gender = CLIPS[r.recording_id]
        assert (r.speaker_id, r.text, r.gender) == (client, text, GENDER[gender])
        assert r.license == "CC0-1.0" and r.language == "te" and r.split == "" and r.source == "commonvoice"
        assert Path(r.uri).is_absolute() and Path(r.uri).is_file() and r.uri.endswith(f"clips/{r.recording_id}.mp3")
    assert {(r.reason, r.recording_id or r.item) for r in rejects} == {
        ("missing_audio", "common_voice_te_30000009"), ("bad_line", "te/validated.tsv:7"),
        ("bad_line", "te/validated.tsv:8")}
    assert all(r.stage == "prepare" and r.detail for r in rejects)


def test_missing_archive_says_what_to_do(tmp_path):
    with pytest.raises(MissingArchive) as e:
        commonvoice.download(tmp_path / "cv")
    msg = str(e.value)
    for needle in ("commonvoice.mozilla.org", "sign-in", "--archive", "matalu ingest --source commonvoice"):
        assert needle in msg, needle


def test_local_path_splits_and_votes(archive_bytes, tmp_path):
    arch = tmp_path / "cv-corpus-17.0-2024-03-15-te.tar.gz"
    arch.write_bytes(archive_bytes)
    target = commonvoice.download(tmp_path / "cv", archive=str(arch), progress=False)
    _check_validated(list(commonvoice.prepare(target)))
    assert commonvoice.download(tmp_path / "cv", progress=False) == target  # reuse without --archive

    recs, rejects = _split(list(commonvoice.prepare(target, splits=["train", "dev", "test"])))
    assert {r.recording_id: r.split for r in recs} == dict(zip(CLIPS, ["train", "train", "dev", "test"]))
    assert rejects == []

    recs, rejects = _split(list(commonvoice.prepare(target, splits="validated", min_up_votes=2, max_down_votes=0)))
    assert [r.recording_id for r in recs] == ["common_voice_te_30000001", "common_voice_te_30000003"]
    votes = {r.recording_id: r.detail for r in rejects if r.reason == "votes"}
    assert set(votes) == {"common_voice_te_30000002", "common_voice_te_30000004"}
    assert "down_votes=1 > max_down_votes=0" in votes["common_voice_te_30000002"]
    assert "up_votes=1 < min_up_votes=2" in votes["common_voice_te_30000004"]

    recs, rejects = _split(list(commonvoice.prepare(target, splits=["train", "validated"])))
    assert [r.recording_id for r in recs] == sorted(CLIPS)
    assert {r.recording_id: r.split for r in recs}["common_voice_te_30000001"] == "train"
    assert sum(r.reason == "duplicate_id" for r in rejects) == 2
    with pytest.raises(ValueError, match="unknown split"):
        list(commonvoice.prepare(target, splits=["training"]))


def test_archive_url(http_server, archive_bytes, tmp_path):
    name = "cv-corpus-17.0-2024-03-15-te.tar.gz"
    url = http_server.add(name, archive_bytes)
    target = tmp_path / "cv"
    arch = tmp_path / name
    arch.write_bytes(archive_bytes)
    with pytest.raises(ValueError, match="sha256"):  # a pin that does not match the file the user has
        commonvoice.download(tmp_path / "cv0", archive=str(arch), sha256={name: "0" * 64}, progress=False)
    commonvoice.download(target, archive=url, sha256={name: hashlib.sha256(archive_bytes).hexdigest()},
                         progress=False)
    _check_validated(list(commonvoice.prepare(target)))
    n = http_server.count()
    commonvoice.download(target, archive=url, sha256={name: hashlib.sha256(archive_bytes).hexdigest()},
                         progress=False)
    assert http_server.count() == n


def test_ingest_end_to_end(ray_session, archive_bytes, tmp_path):
    arch = tmp_path / "cv-corpus-17.0-2024-03-15-te.tar.gz"
    arch.write_bytes(archive_bytes)
    recs, samples, rejects = ingest_source(tmp_path, "commonvoice", {"archive": str(arch)})
    assert sorted(r.recording_id for r in recs) == sorted(CLIPS)
    assert all(r.sample_rate == 48000 for r in recs)
    for cid, (client, text, *_r) in CLIPS.items():
        mine = [s for s in samples if s.recording_id == cid]
        assert len(mine) == 1, (cid, mine)
        assert mine[0].text == text and mine[0].speakers == [client]
        assert mine[0].license == "CC0-1.0" and mine[0].source == "commonvoice"
    assert {r.reason for r in rejects if r.stage == "prepare"} == {"bad_line", "missing_audio"}
