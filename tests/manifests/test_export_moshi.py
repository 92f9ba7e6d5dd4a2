"""moshi-finetune export of a tiny hand-built shard: 24 kHz stereo WAVs + the JSONL (+ alignment JSONs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

import storage
from manifests.export_moshi import MOSHI_SAMPLE_RATE, export_moshi
from manifests.io import manifest_uri, write_rows
from manifests.rows import Sample, Turn

SR = 16000


def flac(audio: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    sf.write(buf, audio.T, SR, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def tone(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spec)])


@pytest.fixture()
def run_dir(tmp_path):
    out = str(tmp_path / "run")
    shard = storage.join(out, "segments", "hand", "dialog", "hand-00000-000.tar")
    items = {
        "hand__a__d-0000000": (np.stack([tone(440, 3.0), tone(1000, 3.0)]), [
            Turn("user", "u", 0.0, 1.2, "ప్రశ్న ఇది"), Turn("system", "s", 1.5, 3.0, "సమాధానం ఇదే చూడండి")]),
        "hand__b__d-0000000": (np.stack([tone(300, 2.5), tone(1500, 2.5)]), [Turn("system", "s", 0.2, 2.0, "ok")]),
        "hand__c__mx-0000000": (tone(700, 1.0)[None], []),
    }
    samples = []
    with storage.ShardWriter(lambda part: shard, max_samples=100) as w:
        for key, (audio, turns) in items.items():
            w.write(key, {"flac": flac(audio), "json": b"{}"})
            kind = "dialog" if audio.shape[0] == 2 else "mono"
            dur = audio.shape[1] / SR
            samples.append(Sample(sample_id=key, kind=kind, shard=shard, source="hand", recording_id=key.split("__")[1],
                                  start_s=0.0, end_s=dur, duration_s=dur, channels=audio.shape[0], turns=turns,
                                  license="CC0-1.0"))
    write_rows(manifest_uri(out, "samples"), samples, Sample)
    return out, items


def test_export_loads(run_dir, tmp_path):
    out, items = run_dir
    jsonl = export_moshi(out, tmp_path / "moshi")
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert [x["path"] for x in lines] == ["data_stereo/hand__a__d-0000000.wav", "data_stereo/hand__b__d-0000000.wav"]
    for line, (src, _) in zip(lines, [items["hand__a__d-0000000"], items["hand__b__d-0000000"]]):
        wav = jsonl.parent / line["path"]  # paths are relative to the JSONL, as moshi-finetune reads them
        y, sr = sf.read(wav, dtype="float32", always_2d=True)
        info = sf.info(wav)
        assert sr == MOSHI_SAMPLE_RATE and y.shape[1] == 2 and info.channels == 2
        assert line["duration"] == pytest.approx(info.duration, abs=1e-6)
        assert line["duration"] == pytest.approx(src.shape[1] / SR, abs=1e-3)
        # channel 0 stays the system side, channel 1 the user side
        for ch in (0, 1):
            assert dominant_hz(y[:, ch], sr) == pytest.approx(dominant_hz(src[ch], SR), abs=2.0)
    meta = json.loads((jsonl.parent / "data_stereo" / "hand__a__d-0000000.json").read_text())
    words = meta["alignments"]
    assert [w[0] for w in words] == ["ప్రశ్న", "ఇది", "సమాధానం", "ఇదే", "చూడండి"]
    assert [w[2] for w in words] == ["SPEAKER_USER"] * 2 + ["SPEAKER_MAIN"] * 3
    assert words[0][1][0] == 0.0 and words[1][1][1] == 1.2 and words[2][1][0] == 1.5 and words[-1][1][1] == 3.0
    # the run's manifests directory and the parquet file work as the URI too; reruns overwrite in place
    assert export_moshi(storage.join(out, "manifests"), tmp_path / "moshi") == jsonl
    assert len(jsonl.read_text().splitlines()) == 2


def test_export_errors(run_dir, tmp_path):
    out, _ = run_dir
    only_mono = str(tmp_path / "mono-run")
    write_rows(manifest_uri(only_mono, "samples"),
               [Sample(sample_id="m", kind="mono", shard="x", source="s", recording_id="r", start_s=0, end_s=1,
                       duration_s=1, channels=1)], Sample)
    with pytest.raises(ValueError, match="no dialog samples"):
        export_moshi(only_mono, tmp_path / "x")
    ghost = str(tmp_path / "ghost-run")
    write_rows(manifest_uri(ghost, "samples"),
               [Sample(sample_id="hand__zz__d-0000000", kind="dialog", shard=storage.join(out, "segments", "hand", "dialog", "hand-00000-000.tar"),
                       source="hand", recording_id="zz", start_s=0, end_s=1, duration_s=1, channels=2)], Sample)
    with pytest.raises(ValueError, match="missing from the shard"):
        export_moshi(ghost, tmp_path / "y")
