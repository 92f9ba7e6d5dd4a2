"""The synthetic source's voices: text normalised for TTS, voice pool specs and their errors, the command and MMS
backends (a small TTS program; a tiny random VitsModel saved with save_pretrained) through the whole ingest path,
and 200 dialogs over a pool of >= 8 voices with every dialog accounted for, the same bytes however the work is
spread (Ray tasks or threads)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipelines.sources import synthetic
from pipelines.tts import make_pool, parse_spec
from pipelines.tts.normalize import number_words, to_spoken
from tests.sources.tts_helpers import SHORT, short_texts, tiny_mms, tts_program


def test_numbers_dates_money_become_telugu_words():
    assert [number_words(n) for n in (7, 15, 21, 101, 234, 2026, 250000)] == [
        "ఏడు", "పదిహేను", "ఇరవై ఒకటి", "నూట ఒకటి", "రెండు వందల ముప్పై నాలుగు", "రెండు వేల ఇరవై ఆరు",
        "రెండు లక్షల యాభై వేలు"]
    assert to_spoken("3/12/2026 న 10:30 కి") == "మూడు డిసెంబర్ రెండు వేల ఇరవై ఆరు న పది ముప్పై కి"
    assert to_spoken("₹500, 25% తగ్గింపు; 2.5 కిలోలు") == "ఐదు వందల రూపాయలు, ఇరవై ఐదు శాతం తగ్గింపు; రెండు పాయింట్ ఐదు కిలోలు"
    assert to_spoken("౧౨ phone") == "పన్నెండు phone"  # Telugu digits read; Latin-script words kept as written


def test_voice_specs_and_their_errors(tmp_path):
    assert parse_spec("12*espeak").count == 12 and parse_spec("espeak").count == 8
    voices, backends = make_pool(["10*espeak"])
    assert len({v.id for v in voices}) == 10 and set(backends) == {"espeak"}
    assert make_pool(["10*espeak"])[0] == voices  # deterministic
    # listed espeak-ng voices, one each; in a pool of two the first is the system (the old system_voice/user_voice)
    assert [v.id for v in make_pool(["espeak:te+f4,te+m3"])[0]] == ["espeak:te+f4:p30-50:s150-175",
                                                                     "espeak:te+m3:p55-75:s140-165"]
    d = synthetic.download(tmp_path / "listed", voices=["espeak:te+f4,te+m3"], n_dialogs=1, min_exchanges=1,
                           max_exchanges=1, texts=str(short_texts(tmp_path / "t.jsonl")), use_ray=False)
    row = _rows(d)[0]
    assert row["voices"]["system"].startswith("espeak:te+f4:") and 55 <= row["user_pitch"] <= 75
    with pytest.raises(ValueError, match="expected"):
        parse_spec("festival")
    with pytest.raises(FileNotFoundError, match="config.json, model.safetensors, vocab.json"):
        make_pool([f"mms:{tmp_path / 'nothing'}"])
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="missing vocab.json, model.safetensors"):
        make_pool([f"mms:{tmp_path / 'half'}"])
    with pytest.raises(ValueError, match=r"\{out\}"):
        make_pool(["command:espeak-ng -v te {text}"])
    with pytest.raises(ValueError, match=r"\{voice\}"):
        make_pool(["3*command:espeak-ng -w {out} {text}"])
    with pytest.raises(ValueError, match="two"):
        synthetic.download(tmp_path / "one", voices=["1*espeak"], n_dialogs=1)


def _rows(d: Path) -> list[dict]:
    return [json.loads(x) for x in (d / "dialogs.jsonl").read_text(encoding="utf-8").splitlines()]


def test_command_voice_speaks_and_failures_are_rejects(tmp_path):
    texts = short_texts(tmp_path / "t.jsonl", [("X అంటే ఏమిటి?", "అది ఒక అక్షరం.")])
    d = synthetic.download(tmp_path / "syn", n_dialogs=8, seed=1, texts=str(texts), min_exchanges=2,
                           max_exchanges=3, voices=[f"3*command:{tts_program(tmp_path)}"], use_ray=False)
    rows = _rows(d)
    spoken = [r for r in rows if "file" in r]
    rejects = [x for r in rows for x in r["rejects"]]
    assert len(rows) == 8 and spoken
    assert rejects and all(x["reason"] == "tts_failed" and "cannot say the letter X" in x["detail"] for x in rejects)
    assert not any("X" in t["text"] for r in spoken for t in r["turns"])  # the failed exchange was left out
    for r in spoken:
        x, sr = sf.read(d / r["file"])
        assert sr == synthetic.SAMPLE_RATE and x.shape[1] == 2 and np.abs(x).max() > 0.1
        assert {t["speaker"].split(":")[0] for t in r["turns"]} == {"command"}


@pytest.fixture(scope="module")
def mms_dir(tmp_path_factory) -> Path:
    return tiny_mms(tmp_path_factory.mktemp("mms") / "mms-tts-tel")


def test_mms_voice_through_the_whole_ingest_path(ray_session, tmp_path, mms_dir):
    from manifests import read_rows
    from manifests.io import manifest_uri
    from manifests.rows import Recording, Reject, Sample
    from pipelines.config import IngestConfig, SourceSpec
    from pipelines.ingest import run_ingest

    texts = short_texts(tmp_path / "t.jsonl", [("ఇది phone కదా?", "అవును, ఇది phone.")])
    opts = {"n_dialogs": 6, "seed": 2, "texts": str(texts), "min_exchanges": 3, "max_exchanges": 4,
            "voices": [f"2*mms:{mms_dir}", "2*espeak"], "use_ray": False}  # Ray tasks: the 200-dialog test
    cfg = IngestConfig(out=str(tmp_path / "out"), sources_dir=str(tmp_path / "src"), unit_size=6, num_workers=1,
                       sources=[SourceSpec("synthetic", opts)])
    cfg.segment.dialog_min_s = 3.0  # short dialogs keep the test fast
    cfg.diarization.report_der_sources = []
    res = run_ingest(cfg, progress=False, say=lambda s: None)
    assert res.committed and res.counts["unaccounted_recordings"] == 0
    recs = read_rows(manifest_uri(cfg.out, "recordings"), Recording)
    samples = read_rows(manifest_uri(cfg.out, "samples"), Sample)
    rejects = read_rows(manifest_uri(cfg.out, "rejects"), Reject)
    assert len(recs) == 6 and samples
    used = {json.loads(r.extra)["tts"]["user"] for r in recs} | {json.loads(r.extra)["tts"]["system"] for r in recs}
    assert any(u.startswith("mms:") for u in used)
    mms_turns = [t for s in samples for t in s.turns if t.speaker.startswith("mms:mms-tts-tel:")]
    assert mms_turns and all(t.end_s > t.start_s for t in mms_turns), [(r.reason, r.detail) for r in rejects]
    # an English word is not in the MMS alphabet: a reject naming why, never a crash (espeak voices say it)
    unspeakable = [r for r in rejects if r.reason == "unspeakable_text"]
    assert all(r.stage == "tts" and "Latin script" in r.detail for r in unspeakable)
    # lineage in each sample's JSON inside the shard: voice ids (backend first) and the answer texts
    from storage.shards import read_sample_at

    dialog = next(s for s in samples if s.kind == "dialog" and any(t.speaker.startswith("mms:") for t in s.turns))
    meta = json.loads(read_sample_at(dialog.shard, dialog.tar_offset, dialog.tar_bytes, dialog.sample_id)["json"])
    assert {t["speaker"].split(":")[0] for t in meta["turns"]} <= {"mms", "espeak"}
    answers = [t["text"] for t in meta["turns"] if t["role"] == "system"]
    assert answers and all(any(a == x for _, x in SHORT + [("", "అవును, ఇది phone.")]) for a in answers)


def test_200_dialogs_many_voices_all_accounted_and_deterministic(ray_session, tmp_path):
    texts = short_texts(tmp_path / "t.jsonl", [("ఇది X కదా?", "కాదు.")])
    opts = dict(n_dialogs=200, seed=5, texts=str(texts), min_exchanges=1, max_exchanges=1, voices=["12*espeak"],
                backchannel_prob=0.3, gap_s={"kind": "lognormal", "a": 0.4, "b": 0.5, "lo": 0.1, "hi": 1.5})
    d = synthetic.download(tmp_path / "ray" / "synthetic", **opts)  # Ray is up: Ray tasks of 8 dialogs
    rows = _rows(d)
    assert [r["index"] for r in rows] == list(range(200))
    recs = [x for x in synthetic.prepare(d) if isinstance(x, synthetic.Recording)]
    assert len(recs) == 200  # espeak says everything (the X too)
    voices = [(json.loads(r.extra)["voices"]["user"], json.loads(r.extra)["voices"]["system"]) for r in recs]
    assert all(u != s for u, s in voices) and len({v for p in voices for v in p}) >= 8
    assert len(set(voices)) > 50  # user and system voices vary across dialogs
    assert sum(json.loads(r.extra)["backchannels"] for r in recs) > 20
    assert all(t.speaker.startswith("espeak:te") for r in recs for t in r.turns)
    # the same dialogs synthesized on local threads, in other chunks: the same bytes
    sub = dict(opts, n_dialogs=12, dialogs_per_task=5, use_ray=False)
    d2 = synthetic.download(tmp_path / "threads" / "synthetic", **sub)

    def sha(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()

    assert all(sha(d / f"audio/syn-005-{i:05d}.wav") == sha(d2 / f"audio/syn-005-{i:05d}.wav") for i in range(12))


def test_ingest_cli_voice_flags_fail_before_ray(tmp_path, capsys):
    import ray

    from matalu.cli import main
    from matalu.commands.ingest import _absolute_mms

    assert _absolute_mms("4*mms:models/x") == f"4*mms:{Path('models/x').resolve()}"
    assert _absolute_mms("command:tts {out} mms:y") == "command:tts {out} mms:y"
    started = ray.is_initialized()
    rc = main(["ingest", "--out", str(tmp_path / "o"), "--sources-dir", str(tmp_path / "s"), "--dialogs", "2",
               "--voices", f"2*mms:{tmp_path / 'no-model'}"])
    err = capsys.readouterr().err
    assert rc == 2 and "put the files of facebook/mms-tts-tel there" in err
    assert ray.is_initialized() == started  # the error came before any Ray start
