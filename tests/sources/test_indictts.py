"""IndicTTS Telugu recipe: the IITM release layout and the HF parquet mirror, built here with real speech."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from manifests import read_rows
from manifests.io import manifest_uri
from manifests.rows import Recording, Reject, Sample
from pipelines.config import IngestConfig, SourceSpec
from pipelines.sources import common, indictts
from tests.audio import telugu_speech, write_as
from tests.httpserver import http_server  # noqa: F401

SR = 48000
MALE = {"train_telugumale_00001": "నమస్కారం, మీరు ఎలా ఉన్నారు?",
        "train_telugumale_00002": 'ఆయన "సరే" అన్నారు.'}
FEMALE = {"train_telugufemale_00001": "ఈ రోజు వాతావరణం చాలా బాగుంది.",
          "train_telugufemale_00002": "మా ఊరిలో పెద్ద చెరువు ఉంది."}


def _festival(utts: dict[str, str]) -> str:
    return "".join(f'( {u} "{t.replace(chr(34), chr(92) + chr(34))}" )\n' for u, t in utts.items())


def make_iitm(root: Path) -> Path:
    """{male,female}/.../wav/*.wav at 48 kHz + txt.done.data, plus one bad line and one prompt without audio."""
    for gender, utts, sub, voice in (("male", MALE, "", "te"), ("female", FEMALE, "mono", "te+f3")):
        d = root / gender / sub if sub else root / gender
        (d / "wav").mkdir(parents=True)
        for u, text in utts.items():
            write_as(d / "wav" / f"{u}.wav", telugu_speech(text, voice=voice, sr=SR), SR)
        extra = '( broken_line "no closing paren\n' if gender == "male" else '( train_telugufemale_00099 "ఇది లేదు" )\n'
        (d / "txt.done.data").write_text(_festival(utts) + "\n" + extra, encoding="utf-8")
    return root


def make_hf(root: Path) -> Path:
    """data/train-0000x-of-00002.parquet like SPRINGLab/IndicTTS_Telugu: audio struct, text, gender ClassLabel."""
    (root / "data").mkdir(parents=True)
    feats = {"audio": {"_type": "Audio"}, "text": {"dtype": "string", "_type": "Value"},
             "gender": {"names": ["female", "male"], "_type": "ClassLabel"}}
    audio_t = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    items = [("female", FEMALE, "te+f3"), ("male", MALE, "te")]
    for k, (gender, utts, voice) in enumerate(items):
        audio, texts = [], []
        for u, text in utts.items():
            buf = io.BytesIO()
            sf.write(buf, telugu_speech(text, voice=voice, sr=SR), SR, format="WAV", subtype="PCM_16")
            audio.append({"bytes": buf.getvalue(), "path": f"{u}.wav"})
            texts.append(text)
        t = pa.table({"audio": pa.array(audio, type=audio_t), "text": texts,
                      "gender": pa.array([k] * len(texts), type=pa.int64())})
        t = t.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": feats}})})
        pq.write_table(t, root / "data" / f"train-0000{k}-of-00002.parquet")
    return root


def _tar_gz(src: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(src, arcname="Telugu")
    return buf.getvalue()


def test_parse_festival_lines():
    assert indictts.parse_line('( utt_1 "ఒకటి రెండు" )') == ("utt_1", "ఒకటి రెండు")
    assert indictts.parse_line('(utt_2 "ఆయన \\"సరే\\" అన్నారు")') == ("utt_2", 'ఆయన "సరే" అన్నారు')
    for bad in ('( utt_3 "no close', 'utt_4 "text"', '( utt_5 text )', '( "only text" )'):
        assert indictts.parse_line(bad) is None


def test_prepare_iitm(tmp_path):
    root = make_iitm(tmp_path / "Telugu")
    assert indictts.detect_layout(root) == "iitm"
    rows = list(indictts.prepare(root))
    recs = [r for r in rows if isinstance(r, Recording)]
    rejects = {r.reason: r for r in rows if isinstance(r, Reject)}
    assert {r.recording_id for r in recs} == {f"male-{u}" for u in MALE} | {f"female-{u}" for u in FEMALE}
    by_id = {r.recording_id: r for r in recs}
    assert by_id["male-train_telugumale_00002"].text == 'ఆయన "సరే" అన్నారు.'
    assert by_id["female-train_telugufemale_00001"].speaker_id == "indictts-te-female"
    assert {r.gender for r in recs} == {"male", "female"}
    assert all(r.license == indictts.LICENSE_IITM and Path(r.uri).is_file() and not r.member for r in recs)
    assert set(rejects) == {"bad_line", "missing_audio"}
    assert rejects["bad_line"].item.startswith("male/txt.done.data:")
    assert [r.recording_id for r in recs] == [r.recording_id for r in indictts.prepare(root) if isinstance(r, Recording)]


def test_prepare_hf_mirror(tmp_path):
    root = make_hf(tmp_path / "IndicTTS_Telugu")
    assert indictts.detect_layout(root) == "hf"
    recs = list(indictts.prepare(root))
    assert all(isinstance(r, Recording) for r in recs) and len(recs) == 4
    assert {(r.text, r.speaker_id, r.gender) for r in recs} == (
        {(t, "indictts-te-female", "female") for t in FEMALE.values()}
        | {(t, "indictts-te-male", "male") for t in MALE.values()})
    r = recs[0]
    assert r.member == "parquet:0:audio" and r.uri.endswith("train-00000-of-00002.parquet")
    assert r.license == "CC-BY-4.0" and r.split == "train"
    from pipelines.stages.read import read_audio

    audio, sr = sf.read(io.BytesIO(read_audio(r)))
    assert sr == SR and len(audio) > SR
    assert len({r.recording_id for r in recs}) == 4


def test_download_missing_dir_and_url(tmp_path, http_server):  # noqa: F811
    with pytest.raises(common.MissingArchive) as e:
        indictts.download(tmp_path / "t")
    assert "matalu ingest --source indictts --archive PATH" in str(e.value) and "iitm.ac.in/donlab/tts" in str(e.value)
    src = make_iitm(tmp_path / "src")
    assert indictts.download(tmp_path / "t", archive=str(src)) == src.resolve()  # a directory: used in place
    url = http_server.add("indictts_te.tar.gz", _tar_gz(src))
    got = indictts.download(tmp_path / "t2", archive=url, progress=False)
    assert (got / "Telugu" / "male" / "txt.done.data").is_file()
    n = http_server.count("/indictts_te.tar.gz")
    assert indictts.download(tmp_path / "t2", archive=url, progress=False) == got  # completed: nothing fetched
    assert http_server.count("/indictts_te.tar.gz") == n
    assert len([r for r in indictts.prepare(got, layout="iitm") if isinstance(r, Recording)]) == 4


def test_ingest_end_to_end(ray_session, tmp_path, http_server):  # noqa: F811
    from pipelines.ingest import run_ingest

    url = http_server.add("Telugu.tar.gz", _tar_gz(make_iitm(tmp_path / "src")))
    cfg = IngestConfig(out=str(tmp_path / "out"), sources_dir=str(tmp_path / "sources"),
                       sources=[SourceSpec("indictts", {"archive": url})], unit_size=4, num_workers=2)
    res = run_ingest(cfg, progress=False)
    assert res.committed and res.counts["unaccounted_recordings"] == 0
    recs = read_rows(manifest_uri(cfg.out, "recordings"), Recording)
    samples = read_rows(manifest_uri(cfg.out, "samples"), Sample)
    rejects = read_rows(manifest_uri(cfg.out, "rejects"), Reject)
    assert len(recs) == 4 and all(r.sample_rate == SR for r in recs)
    texts = {**{f"male-{u}": t for u, t in MALE.items()}, **{f"female-{u}": t for u, t in FEMALE.items()}}
    covered = {s.recording_id for s in samples} | {r.recording_id for r in rejects}
    assert {r.recording_id for r in recs} <= covered
    assert len({s.recording_id for s in samples}) >= 3
    for s in samples:
        assert s.kind == "mono" and s.license == indictts.LICENSE_IITM and s.source == "indictts"
        assert s.text == texts[s.recording_id]
        assert s.speakers == [f"indictts-te-{s.recording_id.split('-')[0]}"]
    assert {r.reason for r in rejects if r.stage == "prepare"} == {"bad_line", "missing_audio"}
