"""IndicVoices Telugu recipe: parquet rows with segment lists become dialogs (turns with roles) or mono speech."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from manifests import read_rows
from manifests.io import manifest_uri
from manifests.rows import Recording, Reject, Sample
from pipelines.config import IngestConfig, SourceSpec
from pipelines.sources import common, indicvoices
from storage import iter_shard
from tests.audio import telugu_speech
from tests.httpserver import http_server  # noqa: F401

SR = 16000
AUDIO_T = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
# (speaker, voice, sentences): the participant (te+f3) asks, the interviewer (te) answers in two sentences
TURNS = [("P1", "te+f3", ["మీకు ఏ పండ్లు అంటే ఇష్టం?"]),
         ("I1", "te", ["మామిడి పండ్లు అంటే నాకు చాలా ఇష్టం.", "ఈ రోజు వాతావరణం చాలా బాగుంది."]),
         ("P1", "te+f3", ["నేను రేపు హైదరాబాద్ వెళ్తున్నాను."]),
         ("I1", "te", ["పిల్లలు ఉదయాన్నే బడికి వెళ్ళారు.", "ఆ పుస్తకం చాలా ఆసక్తికరంగా ఉంది."])]
CONV_ID, MONO_ID = "telugu-train-00000-of-00001-000000-conv_0001", "telugu-train-00000-of-00001-000001-read_0002"
MONO_TEXT = "మా ఊరిలో పెద్ద చెరువు ఉంది."


def _speech(text: str, voice: str) -> np.ndarray:
    x = telugu_speech(text, voice=voice, sr=SR)
    return x[int(0.3 * SR) : -int(0.3 * SR)]  # the speech itself, without telugu_speech's padding


def _flac(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, SR, format="FLAC")
    return buf.getvalue()


def conversation() -> tuple[np.ndarray, list[dict]]:
    """Two voices alternating, with the true segment times (sentence gaps 0.2 s inside a turn, 0.7 s between)."""
    rng = np.random.default_rng(1)
    pieces, segs, t = [np.zeros(int(0.5 * SR), np.float32)], [], 0.5
    for k, (spk, voice, sentences) in enumerate(TURNS):
        for j, s in enumerate(sentences):
            if j:
                pieces.append(np.zeros(int(0.2 * SR), np.float32))
                t += 0.2
            x = _speech(s, voice)
            segs.append({"start": round(t, 4), "end": round(t + len(x) / SR, 4), "text": s, "speaker_id": spk})
            pieces.append(x)
            t += len(x) / SR
        pieces.append(np.zeros(int(0.7 * SR), np.float32))
        t += 0.7
    audio = np.concatenate(pieces)
    return (audio + 10 ** (-60 / 20) * rng.standard_normal(len(audio))).astype(np.float32), segs


def make_copy(root: Path) -> Path:
    """telugu/train-00000-of-00001.parquet: a two-speaker conversation and a single-speaker row."""
    conv, segs = conversation()
    assert len(conv) / SR >= 12
    mono = telugu_speech(MONO_TEXT, voice="te", sr=SR)
    mono_segs = [{"start": 0.3, "end": round(len(mono) / SR - 0.3, 4), "text": MONO_TEXT, "speaker_id": "S9"}]
    t = pa.table({
        "audio_filepath": pa.array([{"bytes": _flac(conv), "path": "conv_0001.flac"},
                                    {"bytes": _flac(mono), "path": "read_0002.flac"}], type=AUDIO_T),
        "text": [" ".join(s["text"] for s in segs), MONO_TEXT],
        "verbatim": [json.dumps(segs, ensure_ascii=False), json.dumps(mono_segs, ensure_ascii=False)],
        "speaker_id": ["P1", "S9"], "gender": ["female", "male"], "state": ["Telangana", "Andhra Pradesh"],
        "district": ["Warangal", "Guntur"], "task_name": ["conversation", "read_speech"],
        "duration": [len(conv) / SR, len(mono) / SR], "lang": ["telugu", "telugu"],
    })
    (root / "telugu").mkdir(parents=True)
    pq.write_table(t, root / "telugu" / "train-00000-of-00001.parquet")
    return root


def test_turns_merge_and_roles():
    segs = indicvoices.parse_segments([
        {"start": 0.0, "end": 2.0, "text": "a", "speaker": "A"}, {"start": 2.2, "end": 4.0, "text": "b", "speaker": "A"},
        {"start": 4.8, "end": 6.0, "text": "c", "speaker": "B"}, {"start": 6.5, "end": 9.0, "text": "d", "speaker": "A"}])
    turns = indicvoices.build_turns(segs)
    assert [(t.role, t.speaker, t.start_s, t.end_s, t.text) for t in turns] == [
        ("system", "A", 0.0, 4.0, "a b"), ("user", "B", 4.8, 6.0, "c"), ("system", "A", 6.5, 9.0, "d")]
    assert [t.role for t in indicvoices.build_turns(segs, "less")] == ["user", "system", "user"]
    assert indicvoices.build_turns(indicvoices.parse_segments('[{"start": 0, "end": 1, "text": "x"}]', "S")) == []
    assert indicvoices.parse_segments("plain transcript, no times") is None
    for bad in ('[{"start": 0, "end": 1', '[{"start": "x", "end": 1}]', '[{"start": 2, "end": 1}]',
                '[{"text": "no times"}]', '{"foo": 1}', "[1, 2]", '[{"start": 0, "end": "inf"}]'):
        with pytest.raises(indicvoices.BadSegments):
            indicvoices.parse_segments(bad)
    with pytest.raises(indicvoices.BadSegments):
        indicvoices.parse_segments([{"start": 0, "end": 9}], duration_s=5.0)


def test_prepare(tmp_path):
    root = make_copy(tmp_path / "iv")
    bad = pa.table({"audio": pa.array([{"bytes": b"x", "path": "b.wav"}], type=AUDIO_T),
                    "segments": ['[{"start": 3, "end": 1, "text": "x", "speaker": "A"}]']})
    pq.write_table(bad, root / "telugu" / "valid-00000-of-00001.parquet")
    rows = list(indicvoices.prepare(root))
    recs = [r for r in rows if isinstance(r, Recording)]
    rejects = [r for r in rows if isinstance(r, Reject)]
    assert [r.reason for r in rejects] == ["bad_segments"] and "valid-00000" in rejects[0].item
    conv, mono = recs
    assert (conv.recording_id, conv.member, conv.speaker_id, conv.channel_roles) == (CONV_ID, "parquet:0:audio_filepath", "I1", [])
    assert [(t.role, t.speaker) for t in conv.turns] == [("user", "P1"), ("system", "I1")] * 2
    assert conv.turns[1].text == " ".join(TURNS[1][2])
    assert (mono.recording_id, mono.turns, mono.text, mono.speaker_id, mono.gender) == (MONO_ID, [], MONO_TEXT, "S9", "male")
    assert all(r.license == "CC-BY-4.0" and r.split == "train" for r in recs)


def test_download(tmp_path, http_server):  # noqa: F811
    with pytest.raises(common.MissingArchive) as e:
        indicvoices.download(tmp_path / "t")
    assert "matalu ingest --source indicvoices --archive" in str(e.value)
    src = make_copy(tmp_path / "src")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(src / "telugu", arcname="IndicVoices/telugu")
    url = http_server.add("indicvoices_te.tar.gz", buf.getvalue())
    got = indicvoices.download(tmp_path / "t", archive=url, progress=False)
    assert indicvoices.download(tmp_path / "t", archive=url, progress=False) == got
    assert indicvoices.download(tmp_path / "t") == got  # no --archive: the finished copy is reused
    assert http_server.count("/indicvoices_te.tar.gz") == 1
    assert [r.recording_id for r in indicvoices.prepare(got)] == ["IndicVoices-" + CONV_ID, "IndicVoices-" + MONO_ID]
    with pytest.raises(ValueError):
        indicvoices.download(tmp_path / "t", archive=url, system_role="loud")


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0


def test_ingest_end_to_end(ray_session, tmp_path):
    from pipelines.ingest import run_ingest

    root = make_copy(tmp_path / "IndicVoices")
    cfg = IngestConfig(out=str(tmp_path / "out"), sources_dir=str(tmp_path / "sources"),
                       sources=[SourceSpec("indicvoices", {"archive": str(root)})], unit_size=4, num_workers=2)
    cfg.segment.dialog_min_s = 5.0
    res = run_ingest(cfg, progress=False)
    assert res.committed and res.counts["unaccounted_recordings"] == 0
    samples = read_rows(manifest_uri(cfg.out, "samples"), Sample)
    rejects = read_rows(manifest_uri(cfg.out, "rejects"), Reject)
    covered = {s.recording_id for s in samples} | {r.recording_id for r in rejects}
    assert {CONV_ID, MONO_ID} <= covered
    assert all(s.license == "CC-BY-4.0" and s.source == "indicvoices" for s in samples)
    mono = [s for s in samples if s.recording_id == MONO_ID]
    assert [(s.kind, s.text, s.speakers) for s in mono] == [("mono", MONO_TEXT, ["S9"])]
    dialogs = [s for s in samples if s.kind == "dialog"]
    assert len(dialogs) == 1
    d = dialogs[0]
    assert d.recording_id == CONV_ID and d.channels == 2 and d.speakers == ["I1", "P1"] and d.duration_s >= 12
    assert d.text.splitlines() == [" ".join(s) for _, _, s in TURNS]
    flac = dict(iter_shard(d.shard))[d.sample_id]["flac"]
    audio, sr = sf.read(io.BytesIO(flac), always_2d=True)
    assert audio.shape[1] == 2 and sr == SR
    assert [t.role for t in d.turns] == ["user", "system", "user", "system"]
    for t in d.turns:
        seg = audio[int((t.start_s + 0.05) * sr) : int((t.end_s - 0.05) * sr)]
        own, other = (0, 1) if t.role == "system" else (1, 0)
        assert _rms(seg[:, own]) > 0.01 and _rms(seg[:, own]) > 10 * _rms(seg[:, other]), t
