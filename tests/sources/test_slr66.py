"""SLR66 recipe: the two published zips (48 kHz WAVs + line_index.tsv), served from 127.0.0.1, with broken lines."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from manifests.rows import Recording, Reject
from pipelines.sources import slr66
from pipelines.sources.common import RemoteFile
from storage.download import ChecksumMismatch, HostNotAllowed
from tests import httpserver as _httpserver
from tests.audio import telugu_speech, write_as
from tests.conftest import ingest_source

http_server = _httpserver.http_server  # the fixture, used by name below

TEXTS = {
    "tef_01033_00007107192": "ఈ రోజు ఆకాశం మబ్బుగా ఉంది",
    "tef_01033_00008123456": "సాయంత్రానికి చిన్న వాన పడే అవకాశం ఉంది",
    "tem_03055_00002222222": "నేను రేపు బడికి వెళ్తాను",
    "tem_04066_00003333333": "మా ఊరిలో పెద్ద చెరువు ఉంది",
}
UNLISTED = "tef_02044_00001111111"  # a WAV in the zip with no transcript line
FEMALE_INDEX = [
    f"tef_01033_00007107192\t{TEXTS['tef_01033_00007107192']}",
    f"tef_01033_00008123456\t{TEXTS['tef_01033_00008123456']}\tఅదనపు నిలువు వరుస",  # third column: ignored
    "tef_09999_00000000001\tఈ ఫైలు జిప్‌లో లేదు",  # listed, no WAV: missing_audio
    "ఈ లైనులో ట్యాబ్ లేదు",  # no tab: bad_line (line 4)
]
MALE_INDEX = [
    f"tem_03055_00002222222\t{TEXTS['tem_03055_00002222222']}",
    "\tఐడీ లేని లైను",  # empty id: bad_line (line 2)
    f"tem_04066_00003333333\t{TEXTS['tem_04066_00003333333']}",
    "tem_05077_00004444444\t",  # empty text: bad_line (line 4)
]


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def zips(tmp_path_factory) -> dict[str, bytes]:
    """The two zips in the published layout: WAVs and line_index.tsv at the top, plus LICENSE."""
    d = tmp_path_factory.mktemp("slr66_audio")
    wav = {}
    for fid in [*TEXTS, UNLISTED]:
        p = write_as(d / f"{fid}.wav", telugu_speech(TEXTS.get(fid, "ఇది ఒక పరీక్ష వాక్యం"), sr=48000), 48000)
        wav[fid] = p.read_bytes()
    lic = b"Creative Commons Attribution-ShareAlike 4.0 International\n"
    female = {"LICENSE": lic, "line_index.tsv": ("\n".join(FEMALE_INDEX) + "\n").encode()}
    female |= {f"{f}.wav": wav[f] for f in wav if f.startswith("tef")}
    male = {"LICENSE": lic, "line_index.tsv": ("\n".join(MALE_INDEX) + "\n").encode()}
    male |= {f"{f}.wav": wav[f] for f in wav if f.startswith("tem")}
    return {"te_in_female.zip": _zip(female), "te_in_male.zip": _zip(male)}


def _serve(server, zips) -> dict[str, str]:
    for name, data in zips.items():
        server.add(name, data)
    return {name: hashlib.sha256(data).hexdigest() for name, data in zips.items()}


def _check_rows(rows):
    recs = [r for r in rows if isinstance(r, Recording)]
    rejects = [r for r in rows if isinstance(r, Reject)]
    assert [r.recording_id for r in recs] == sorted(TEXTS)
    for r in recs:
        assert r.text == TEXTS[r.recording_id]
        assert r.speaker_id == "_".join(r.recording_id.split("_")[:2])
        assert r.gender == ("female" if r.recording_id.startswith("tef") else "male")
        assert r.license == "CC-BY-SA-4.0" and r.language == "te" and r.source == "slr66" and r.member == ""
        assert Path(r.uri).is_absolute() and Path(r.uri).is_file() and r.uri.endswith(f"{r.recording_id}.wav")
    got = {(r.reason, r.item) for r in rejects}
    assert got == {
        ("missing_audio", "tef_09999_00000000001"),
        ("bad_line", "te_in_female/line_index.tsv:4"),
        ("no_transcript", UNLISTED),
        ("bad_line", "te_in_male/line_index.tsv:2"),
        ("bad_line", "te_in_male/line_index.tsv:4"),
    }
    assert all(r.stage == "prepare" and r.source == "slr66" and r.detail for r in rejects)
    return recs, rejects


def test_download_prepare_and_rerun(http_server, zips, tmp_path):
    pins = _serve(http_server, zips)
    target = tmp_path / "slr66"
    assert slr66.download(target, mirror=http_server.base_url, sha256=pins, progress=False) == target
    assert http_server.count("/te_in_female.zip") == 1 and http_server.count("/te_in_male.zip") == 1
    _check_rows(list(slr66.prepare(target)))
    before = http_server.count()
    slr66.download(target, mirror=http_server.base_url, sha256=pins, progress=False)
    assert http_server.count() == before  # the rerun skips: no HTTP at all
    assert list(slr66.prepare(target)) == list(slr66.prepare(target))  # stable order


def test_checksum_and_host_allow_list(http_server, zips, tmp_path, monkeypatch):
    pins = _serve(http_server, zips)
    with pytest.raises(ChecksumMismatch):
        slr66.download(tmp_path / "a", mirror=http_server.base_url, progress=False,
                       sha256={**pins, "te_in_female.zip": "0" * 64})
    monkeypatch.setattr(slr66, "REMOTES", {g: RemoteFile(http_server.url(f"te_in_{g}.zip"), pins[f"te_in_{g}.zip"])
                                           for g in ("female", "male")})
    before = http_server.count()
    with pytest.raises(HostNotAllowed):
        slr66.download(tmp_path / "c", progress=False)
    assert http_server.count() == before
    assert not (tmp_path / "c" / ".completed").exists()


def test_archive_directory_and_single_zip(zips, tmp_path):
    have = tmp_path / "have"
    have.mkdir()
    for name, data in zips.items():
        (have / name).write_bytes(data)
    pins = {name: hashlib.sha256(data).hexdigest() for name, data in zips.items()}
    target = slr66.download(tmp_path / "t1", archive=str(have), sha256=pins, progress=False)
    _check_rows(list(slr66.prepare(target)))
    one = slr66.download(tmp_path / "t2", archive=str(have / "te_in_male.zip"), progress=False,
                         sha256={"te_in_male.zip": pins["te_in_male.zip"]})
    ids = [r.recording_id for r in slr66.prepare(one) if isinstance(r, Recording)]
    assert ids == sorted(k for k in TEXTS if k.startswith("tem"))
    only_female = slr66.download(tmp_path / "t3", archive=str(have), sha256=pins, genders=["female"], progress=False)
    ids = [r.recording_id for r in slr66.prepare(only_female) if isinstance(r, Recording)]
    assert ids == sorted(k for k in TEXTS if k.startswith("tef"))
    with pytest.raises(FileNotFoundError, match="run download"):
        list(slr66.prepare(tmp_path / "nothing"))


def test_ingest_end_to_end(ray_session, http_server, zips, tmp_path):
    pins = _serve(http_server, zips)
    recs, samples, rejects = ingest_source(tmp_path, "slr66", {"mirror": http_server.base_url, "sha256": pins})
    assert sorted(r.recording_id for r in recs) == sorted(TEXTS)
    assert all(r.sample_rate == 48000 and r.channels == 1 for r in recs)
    for fid, text in TEXTS.items():
        mine = [s for s in samples if s.recording_id == fid]
        assert len(mine) == 1, (fid, mine)
        assert mine[0].text == text and mine[0].speakers == ["_".join(fid.split("_")[:2])]
        assert mine[0].license == "CC-BY-SA-4.0" and mine[0].kind == "mono" and mine[0].source == "slr66"
    assert {r.reason for r in rejects if r.stage == "prepare"} == {"bad_line", "missing_audio", "no_transcript"}
