"""Kathbath Telugu recipe: the release tar layout (M4A + transcription_n2w.txt) and the HF parquet mirror."""

from __future__ import annotations

import io
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
from pipelines.sources import common, kathbath
from tests.audio import telugu_speech, write_as
from tests.httpserver import http_server  # noqa: F401

# split -> [(file stem <utt>-<spk>-<gender>, voice, text)]
UTTS = {
    "train": [("844424931537866-594-f", "te+f3", "నేను రేపు హైదరాబాద్ వెళ్తున్నాను."),
              ("844424931537867-594-f", "te+f3", "పిల్లలు ఉదయాన్నే బడికి వెళ్ళారు."),
              ("844424932000001-1201-m", "te", "ఆ పుస్తకం చాలా ఆసక్తికరంగా ఉంది.")],
    "test_known": [("844424933481805-1194-m", "te", "మామిడి పండ్లు అంటే నాకు చాలా ఇష్టం.")],
}


def make_release(root: Path) -> Path:
    """kathbath/data/telugu/<split>/audio/*.m4a + <split>/transcription_n2w.txt (+ a bad line, an orphan file)."""
    lang = root / "kathbath" / "data" / "telugu"
    for split, utts in UTTS.items():
        (lang / split / "audio").mkdir(parents=True)
        lines = []
        for stem, voice, text in utts:
            write_as(lang / split / "audio" / f"{stem}.m4a", telugu_speech(text, voice=voice, sr=16000), 16000)
            lines.append(f"{stem}.m4a\t{text}")
        if split == "train":
            lines += ["this line has no tab", "844424939999999-77-m.m4a\tఈ ఫైలు లేదు"]
            (lang / split / "transcription.txt").write_text("ignored: the n2w file wins\n", encoding="utf-8")
        (lang / split / "transcription_n2w.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def make_hf(root: Path) -> Path:
    """telugu/{train,valid}-00000-of-00001.parquet with audio structs, text, gender, speaker_id, fname."""
    audio_t = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    (root / "telugu").mkdir(parents=True)
    (root / "tamil").mkdir()
    for split, utts in (("train", UTTS["train"]), ("valid", UTTS["test_known"])):
        audio = []
        for stem, voice, text in utts:
            buf = io.BytesIO()
            sf.write(buf, telugu_speech(text, voice=voice, sr=16000), 16000, format="FLAC")
            audio.append({"bytes": buf.getvalue(), "path": f"{stem}.m4a"})
        t = pa.table({"fname": [f"{u[0]}.m4a" for u in utts], "text": [u[2] for u in utts],
                      "audio_filepath": pa.array(audio, type=audio_t),
                      "gender": ["female" if u[0].endswith("-f") else "male" for u in utts],
                      "speaker_id": [u[0].split("-")[1] for u in utts], "lang": ["telugu"] * len(utts)})
        pq.write_table(t, root / "telugu" / f"{split}-00000-of-00001.parquet")
    pq.write_table(pq.read_table(root / "telugu" / "valid-00000-of-00001.parquet"), root / "tamil" / "train-0.parquet")
    return root


def test_prepare_release(tmp_path):
    root = make_release(tmp_path / "x")
    write_as(root / "kathbath/data/telugu/test_known/audio/844424930000000-5-f.m4a", telugu_speech(sr=16000), 16000)
    assert kathbath.detect_layout(root) == "tar"
    rows = list(kathbath.prepare(root))
    recs = [r for r in rows if isinstance(r, Recording)]
    reasons = sorted(r.reason for r in rows if isinstance(r, Reject))
    assert reasons == ["bad_line", "missing_audio", "no_transcript"]
    want = {(f"{split}-{stem}", text, stem.split("-")[1], {"f": "female", "m": "male"}[stem[-1]], split)
            for split, utts in UTTS.items() for stem, _, text in utts}
    assert {(r.recording_id, r.text, r.speaker_id, r.gender, r.split) for r in recs} == want
    assert all(r.license == "CC-BY-4.0" and r.uri.endswith(".m4a") and Path(r.uri).is_file() for r in recs)


def test_prepare_hf_mirror(tmp_path):
    root = make_hf(tmp_path / "Kathbath")
    assert kathbath.detect_layout(root) == "hf"
    recs = list(kathbath.prepare(root))
    assert all(isinstance(r, Recording) for r in recs) and len(recs) == 4  # tamil/ left out
    by = {r.recording_id.split("-", 6)[-1]: r for r in recs}  # telugu-train-00000-of-00001-<row>-<file stem>
    assert recs[0].recording_id == "telugu-train-00000-of-00001-000000-844424931537866-594-f"
    r = by["844424932000001-1201-m"]
    assert (r.speaker_id, r.gender, r.split, r.member) == ("1201", "male", "train", "parquet:2:audio_filepath")
    assert by["844424933481805-1194-m"].text == UTTS["test_known"][0][2]
    from pipelines.stages.read import read_audio

    audio, sr = sf.read(io.BytesIO(read_audio(r)))
    assert sr == 16000 and len(audio) > 16000


def test_download(tmp_path, http_server):  # noqa: F811
    with pytest.raises(common.MissingArchive) as e:
        kathbath.download(tmp_path / "t")
    assert "matalu ingest --source kathbath --archive PATH" in str(e.value)
    src = make_release(tmp_path / "src")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.add(src / "kathbath", arcname="kathbath")
    url = http_server.add("telugu.tar", buf.getvalue())
    got = kathbath.download(tmp_path / "t", archive=url, progress=False)
    assert (got / "kathbath/data/telugu/train/transcription_n2w.txt").is_file()
    assert kathbath.download(tmp_path / "t", archive=url, progress=False) == got
    assert http_server.count("/telugu.tar") == 1
    assert len([r for r in kathbath.prepare(got) if isinstance(r, Recording)]) == 4


def test_ingest_end_to_end(ray_session, tmp_path):
    from pipelines.ingest import run_ingest

    src = make_release(tmp_path / "src")
    archive = tmp_path / "telugu.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(src / "kathbath", arcname="kathbath")
    cfg = IngestConfig(out=str(tmp_path / "out"), sources_dir=str(tmp_path / "sources"),
                       sources=[SourceSpec("kathbath", {"archive": str(archive)})], unit_size=4, num_workers=2)
    res = run_ingest(cfg, progress=False)
    assert res.committed and res.counts["unaccounted_recordings"] == 0
    recs = read_rows(manifest_uri(cfg.out, "recordings"), Recording)
    samples = read_rows(manifest_uri(cfg.out, "samples"), Sample)
    rejects = read_rows(manifest_uri(cfg.out, "rejects"), Reject)
    assert len(recs) == 4
    assert {r.recording_id for r in recs} <= {s.recording_id for s in samples} | {r.recording_id for r in rejects}
    assert len({s.recording_id for s in samples}) >= 3
    texts = {f"{split}-{stem}": (text, stem.split("-")[1]) for split, utts in UTTS.items() for stem, _, text in utts}
    for s in samples:
        assert s.kind == "mono" and s.license == "CC-BY-4.0" and s.source == "kathbath"
        assert (s.text, s.speakers) == (texts[s.recording_id][0], [texts[s.recording_id][1]])
        assert s.split == s.recording_id.split("-")[0]
    assert {r.reason for r in rejects if r.stage == "prepare"} == {"bad_line", "missing_audio"}
