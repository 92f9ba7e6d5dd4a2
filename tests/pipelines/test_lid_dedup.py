"""Quality filters B: language ID of transcripts and audio, and duplicates across the whole run.

Real espeak-ng audio through the real stages: text LID on Telugu/Hindi/Kannada/English transcripts, audio LID from a
small random transformers model whose classifier bias forces its label, landmark fingerprints on an mp3 copy at
another level, and one ingest run where a jingle sits in three recordings of three units, a recording is copied
into another unit, and a Hindi recording is mixed in.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipelines.stages.dedup import DedupConfig, find_duplicates, fingerprint
from pipelines.stages.lid import AudioLid, LidConfig, TextLid, check_audio_folder
from tests.audio import telugu_speech, write_as

TE = ["ఈ రోజు ఆకాశం మబ్బుగా ఉంది, సాయంత్రానికి చిన్న వాన పడే అవకాశం ఉంది.",
      "రేపు మధ్యాహ్నం తర్వాత వర్షం పడొచ్చు, బయటికి వెళ్తే గొడుగు తీసుకెళ్ళండి.",
      "మధ్యాహ్నం ఎండలో తిరగకండి, తరచూ నీళ్ళు తాగండి, తల మీద టోపీ పెట్టుకోండి.",
      "మన దగ్గర సాధారణంగా జూన్ నెలలో నైరుతి రుతుపవనాలతో వర్షాకాలం మొదలవుతుంది."]
HI = "आज आसमान में बादल छाए हुए हैं और शाम को हल्की बारिश हो सकती है।"
KN = "ಇಂದು ಆಕಾಶ ಮೋಡ ಕವಿದಿದೆ, ಸಂಜೆ ಸ್ವಲ್ಪ ಮಳೆ ಬರುವ ಸಾಧ್ಯತೆ ಇದೆ."
EN = "The sky is cloudy today and there may be a little rain in the evening."
AD = "మా కొత్త దుకాణానికి రండి, అన్ని వస్తువుల మీద సగం ధర తగ్గింపు."  # the jingle's words


def test_text_lid_telugu_hindi_kannada_english():
    lid = TextLid(LidConfig())
    for t in TE + ["నేను ఈ రోజు office కి వెళ్ళి meeting లో ఉంటాను, 5 గంటలకు call చేస్తాను."]:
        v = lid.judge(t)
        assert v.ok and v.language == "te" and v.score > 0.5, (t, v)
    for text, lang in ((HI, "hi"), (KN, "kn"), (EN, "en")):
        v = lid.judge(text)
        assert not v.ok and v.language == lang, (text, v)
        assert f"transcript is {lang}" in v.detail and "0% of its" in v.detail
    assert lid.judge("123 456") is None  # no letters: not judged
    # code-mixing beyond the allowed share is another language
    assert not TextLid(LidConfig(min_telugu_share=0.9)).judge("నేను office కి వెళ్ళి meeting లో ఉంటాను").ok


def test_bundled_synthetic_texts_pass_text_lid():
    from pipelines.sources.synthetic import load_pairs

    lid = TextLid(LidConfig())
    bad = [(t, v) for p in load_pairs() for t in (p["q"], p["a"]) if not (v := lid.judge(t)).ok]
    assert not bad


def _audio_model(folder: Path, labels: list[str], forced: int) -> Path:
    transformers = pytest.importorskip("transformers")
    import torch

    cfg = transformers.Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, conv_dim=(8, 8),
        conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        classifier_proj_size=8, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={x: i for i, x in enumerate(labels)}, do_stable_layer_norm=True, feat_extract_norm="layer")
    torch.manual_seed(0)
    model = transformers.Wav2Vec2ForSequenceClassification(cfg).eval()
    with torch.no_grad():  # the bias forces one label whatever the (random) features say
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        model.classifier.bias[forced] = 20.0
    model.save_pretrained(str(folder))
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(str(folder))
    return folder


def test_audio_lid_keeps_and_rejects_by_the_predicted_label(tmp_path):
    speech = telugu_speech(TE[0])
    te = AudioLid(str(_audio_model(tmp_path / "te", ["hin", "tel", "eng"], 1)))
    v = te.judge(speech, 16000)
    assert v.ok and v.language == "te" and v.score > 0.99
    hi = AudioLid(str(_audio_model(tmp_path / "hi", ["hin", "tel", "eng"], 0)))
    v = hi.judge(speech, 16000)
    assert not v.ok and v.language == "hin" and "audio LID says hin" in v.detail
    # a missing or broken folder is one sentence naming what is wrong
    with pytest.raises(FileNotFoundError, match="no such folder"):
        check_audio_folder(str(tmp_path / "nope"))
    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "te", broken)
    cfg = json.loads((broken / "config.json").read_text())
    cfg.pop("id2label")
    (broken / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="no id2label"):
        check_audio_folder(str(broken))


def test_cli_lid_missing_folder_is_one_line(tmp_path, capsys):
    from matalu.cli import main

    rc = main(["ingest", "--out", str(tmp_path / "o"), "--lid", str(tmp_path / "nope"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--lid" in err and "no such folder" in err


def _read(path: Path) -> np.ndarray:
    from pipelines.stages.decode import decode_bytes

    return decode_bytes(path.read_bytes(), str(path), 16000).audio


def test_fingerprints_find_a_reencoded_copy_not_another_reading(tmp_path):
    cfg = DedupConfig()
    a, b = telugu_speech(TE[0]), telugu_speech(TE[1])
    other_voice = telugu_speech(TE[0], voice="te+f3")  # the same sentence by another speaker
    mp3 = _read(write_as(tmp_path / "a.mp3", 0.5 * a, 16000))  # another codec and bitrate, 6 dB quieter
    fps = [fingerprint(n, "mono", n, "t", x[None] if x.ndim == 1 else x, 16000, cfg)
           for n, x in (("a", a), ("b", b), ("other", other_voice), ("a_mp3", mp3), ("a_again", a))]
    dups = {r.item: r.detail for r in find_duplicates(fps, cfg)}
    assert set(dups) == {"a_mp3", "a_again"}, dups
    assert dups["a_again"].startswith("exact duplicate of a ")
    assert dups["a_mp3"].startswith("near duplicate of a:")


def _jingle() -> np.ndarray:
    """A spoken ad over a little tune (the same bytes wherever it is inserted)."""
    ad = telugu_speech(AD, voice="te+m3")
    t = np.arange(len(ad)) / 16000
    tune = 0.05 * np.sin(2 * np.pi * np.where((t * 4).astype(int) % 2, 660.0, 440.0) * t)
    return (ad + tune).astype(np.float32)


def test_run_level_duplicates_and_language(tmp_path, ray_session):
    """Seven recordings in three units: a jingle after the speech of r0, r2 and r5 (three units); r6 the FLAC of r3's
    WAV (the same decoded audio, another unit); r1 Hindi; r3 is TE[0] read by another voice than r0. The jingle is
    kept only where it first occurs, the copy is an exact duplicate, every recording is accounted for."""
    import subprocess

    from manifests import read_rows
    from manifests.io import manifest_uri
    from manifests.rows import Reject, Sample
    from pipelines.config import IngestConfig, SourceSpec
    from pipelines.ingest import run_ingest

    d = tmp_path / "audio"
    d.mkdir()
    jingle, gap = _jingle(), np.zeros(8000, np.float32)
    clips, jingle_at = {}, {}
    for rid, text, voice, with_jingle in (("r0", TE[0], "te", True), ("r1", HI, "hi", False),
                                          ("r2", TE[1], "te", True), ("r3", TE[0], "te+f3", False),
                                          ("r4", TE[3], "te", False), ("r5", TE[2], "te", True)):
        speech = telugu_speech(text, voice=voice)
        if with_jingle:
            jingle_at[rid] = (len(speech) + len(gap)) / 16000
            speech = np.concatenate([speech, gap, jingle])
        clips[rid] = (speech, text)
    lines = []
    for rid, (audio, text) in clips.items():
        write_as(d / f"{rid}.wav", audio, 16000)
        lines.append({"id": rid, "path": f"{rid}.wav", "text": text, "license": "CC0-1.0"})
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(d / "r3.wav"), str(d / "r6.flac")], check=True)
    lines.append({"id": "r6", "path": "r6.flac", "text": TE[0], "license": "CC0-1.0"})
    (d / "list.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))

    cfg = IngestConfig(out=str(tmp_path / "out"), sources_dir=str(tmp_path / "src"),
                       sources=[SourceSpec("manifest", {"path": str(d / "list.jsonl")})], unit_size=3,
                       num_workers=2)
    res = run_ingest(cfg, progress=False, say=lambda s: None)
    assert res.committed and res.counts["unaccounted_recordings"] == 0
    samples = read_rows(manifest_uri(cfg.out, "samples"), Sample)
    rejects = read_rows(manifest_uri(cfg.out, "rejects"), Reject)
    listing = [(r.item, r.reason, r.detail) for r in rejects]

    def holds_jingle(rid: str, start: float, end: float) -> bool:
        return rid in jingle_at and start < jingle_at[rid] + 1.0 and end > jingle_at[rid] + 1.0

    kept_jingle = [s for s in samples if holds_jingle(s.recording_id, s.start_s, s.end_s)]
    assert [s.recording_id for s in kept_jingle] == ["r0"], (samples, listing)
    first = kept_jingle[0].sample_id
    dups = {r.item: r for r in rejects if r.reason == "duplicate"}
    assert all(r.stage == "dedup" for r in dups.values())
    for rid in ("r2", "r5"):  # the jingle: rejected everywhere but its first occurrence, naming it
        mine = [r for r in dups.values() if r.recording_id == rid]
        assert len(mine) == 1 and mine[0].detail.startswith(f"near duplicate of {first}:"), listing
    r3 = [s.sample_id for s in samples if s.recording_id == "r3"]
    r6 = [r for r in dups.values() if r.recording_id == "r6"]
    assert r3 and len(r6) == len(r3) and not [s for s in samples if s.recording_id == "r6"]
    assert all(r.detail.startswith(f"exact duplicate of {k} ") for r, k in zip(sorted(r6, key=lambda r: r.item), r3))
    lang = [r for r in rejects if r.reason == "wrong_language"]
    assert [r.recording_id for r in lang] == ["r1"] and "transcript is hi" in lang[0].detail, listing
    assert {s.recording_id for s in samples} >= {"r0", "r3", "r4"}  # the same sentence by another voice is kept
    assert all(s.language == "te" and s.lid_score > 0.5 for s in samples if s.text)
    assert res.counts["duplicates"] == len(dups) and res.counts["samples"] == len(samples)
    # the encode job reads the shards, which still hold the duplicates: it encodes only what the manifests list
    from manifests.licenses import license_filter
    from pipelines.encode import CodecInfo, read_unit
    from pipelines.encode import make_units as encode_units

    info = CodecInfo("test-codec", 16000, 50.0, 8, 1024, 320, 1)
    read = [read_unit(u, info, license_filter([])) for u in encode_units(cfg.out, info.codec_id)]
    assert {k for ua in read for k, _, _ in ua.items} == {s.sample_id for s in samples}
    assert {r.item for ua in read for r in ua.rejects} == set(dups)
    assert all(r.reason and r.detail for r in rejects)
    # resume: the last unit (r6, the exact copy) is lost and redone; the run-level step reaches the same decision
    import storage
    from jobs.runner import DONE, parts_uri

    storage.remove(storage.join(parts_uri(cfg.out, "manifest-00002"), DONE))
    again = run_ingest(cfg, progress=False, say=lambda s: None)
    assert again.committed and again.units_processed == 1
    assert read_rows(manifest_uri(cfg.out, "rejects"), Reject) == rejects
    assert read_rows(manifest_uri(cfg.out, "samples"), Sample) == samples
