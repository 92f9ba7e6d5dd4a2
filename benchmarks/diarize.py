"""Embedded diarizer on real recordings and on synthetic dialogs, and vs pyannote.audio, side by side in one run,
one core (``torch.set_num_threads(1)``).

Real recordings (``--real DIR``: ``*.flac`` files plus ``reference.rttm``; default the three AMI excerpts in
tests/data/diarization; the issue-8 figures use the 12-file AMI dev set): DER (collar 0 and 0.25, overlap
scored), JER, speaker-count accuracy, the share of reference speech that is overlapped (a one-speaker-per-frame
diarizer misses at least that much), x realtime per core; per file, and for the ``trn*`` files (the ones the
parameters were calibrated on), the other files, and the two-speaker files separately.

Makes N synthetic two-voice Telugu dialogs (espeak-ng ``te`` system vs ``te+f3`` user, gaps and some overlaps;
the ``synthetic`` source), mixes each to mono 16 kHz, then on the same audio measures:

* the embedded diarizer (Silero VAD + resemblyzer + clustering), all dialogs in one ``diarize_many`` call:
  x realtime per core (audio seconds / CPU seconds of this process), and the VAD's share;
  DER (collar 0 and 0.25 s, overlap scored) and JER against the true turns; speakers found.
* pyannote.audio's ``SpeakerDiarization`` pipeline loaded from a community-1-style directory (``--checkpoint``;
  default: one built here with the same architectures, PyanNet + WeSpeakerResNet34 + VBx/PLDA, random weights):
  - segmentation: the pipeline's own sliding ``Inference`` over every dialog (10 s chunks, 1 s step);
  - embedding: the pipeline's own embedding call (WeSpeakerResNet34 with masks, batch 32 as configured) timed
    on a sample of its (chunk, local speaker) pairs and scaled to the number of pairs the pipeline embeds
    (chunks x 3 local speakers; pyannote embeds every pair);
  - the full pipeline end to end on the first ``--full-s`` seconds of one dialog.
  With random weights the cost is the real one (same layers, same shapes), the diarization is not; pass a real
  checkpoint with ``--checkpoint DIR --pyannote-der`` to also score pyannote's output.

CPU time is what a core spends (robust to other load on the machine); wall time is printed beside it.
Usage: python benchmarks/diarize.py [--dialogs 8] [--seed 11] [--checkpoint DIR] [--full-s 15] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SR = 16000


class Clock:
    def __enter__(self):
        self.c0, self.w0 = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.cpu = time.process_time() - self.c0
        self.wall = time.perf_counter() - self.w0


def make_dialogs(d: Path, n: int, seed: int):
    import soundfile as sf

    from pipelines.sources import synthetic
    from storage.audio import resample

    synthetic.download(d / "synthetic", n_dialogs=n, seed=seed, voices=["espeak:te,te+f3"])
    out = []
    for rec in synthetic.prepare(d / "synthetic"):
        x, sr = sf.read(rec.uri, dtype="float32")
        mix = resample(np.ascontiguousarray(x.sum(axis=1))[None], sr, SR)[0]
        out.append((rec.recording_id, mix, [(t.start_s, t.end_s, t.speaker) for t in rec.turns]))
    return out


def bench_embedded(dialogs):
    from pipelines.stages.der import score
    from pipelines.stages.diarize import DiarizeConfig, EmbeddedDiarizer

    with Clock() as load:
        d = EmbeddedDiarizer(DiarizeConfig())
    d.diarize_many([dialogs[0][1][: 3 * SR]])  # warm-up
    audios = [m for _, m, _ in dialogs]
    with Clock() as vad:
        d.vad.probs(audios)
    with Clock() as run:
        hyps = d.diarize_many(audios)
    rep = score({u: r for u, _, r in dialogs}, {u: h for (u, _, _), h in zip(dialogs, hyps)}, (0.0, 0.25))
    return {"load_s": load.wall, "cpu_s": run.cpu, "wall_s": run.wall, "vad_cpu_s": vad.cpu,
            "speakers_found": [len({k for *_, k in h}) for h in hyps],
            "count_right": sum(len({k for *_, k in h}) == len({k for *_, k in r}) for h, (_, _, r) in zip(hyps, dialogs))
            / len(dialogs),
            "der": {str(s.collar): s.der for s in rep.overall}, "jer": {str(s.collar): s.jer for s in rep.overall},
            "missed": rep.overall[0].missed_rate, "false_alarm": rep.overall[0].false_alarm_rate,
            "confusion": rep.overall[0].confusion_rate}


def load_real(d: Path):
    import soundfile as sf

    from pipelines.stages.rttm import read_rttm

    ref = read_rttm(d / "reference.rttm")
    files = sorted(p for p in d.glob("*.flac") if p.stem in ref)
    if not files:
        raise SystemExit(f"{d} holds no .flac file named in its reference.rttm")
    return [(p.stem, sf.read(p, dtype="float32")[0], ref[p.stem]) for p in files]


def bench_real(recs):
    """Embedded diarizer, no speaker-count hint, on real recordings: one file at a time (as `matalu diarize`)."""
    import numpy as np

    from pipelines.stages.der import score
    from pipelines.stages.diarize import DiarizeConfig, EmbeddedDiarizer

    d = EmbeddedDiarizer(DiarizeConfig())
    d.diarize(recs[0][1][: 5 * SR])  # warm-up
    hyps = {}
    with Clock() as run:
        for u, x, _ in recs:
            hyps[u] = d.diarize(x)
    ref = {u: r for u, _, r in recs}
    audio_s = sum(len(x) for _, x, _ in recs) / SR
    n_ref = {u: len({k for *_, k in r}) for u, r in ref.items()}
    n_hyp = {u: len({k for *_, k in h}) for u, h in hyps.items()}

    def union(segs, n):  # 10 ms frames where anyone speaks
        m = np.zeros(n, bool)
        for a, b, _ in segs:
            m[int(round(a * 100)) : int(round(b * 100))] = True
        return m

    def part(names):
        if not names:
            return None
        rep = score({u: ref[u] for u in names}, {u: hyps[u] for u in names}, (0.0, 0.25))
        c0, c25 = rep.overall
        # speech detection alone (who speaks aside): the reference's speech frames the hypothesis leaves silent
        # and the reverse, as shares of the reference's speech frames
        sd = np.zeros(3)
        for u in names:
            n = int(max([e for _, e, _ in ref[u] + hyps[u]] + [0]) * 100) + 2
            r, h = union(ref[u], n), union(hyps[u], n)
            sd += [np.count_nonzero(r & ~h), np.count_nonzero(h & ~r), np.count_nonzero(r)]
        return {"files": len(names), "der": c0.der, "der_collar025": c25.der, "jer": c0.jer,
                "missed": c0.missed_rate, "false_alarm": c0.false_alarm_rate, "confusion": c0.confusion_rate,
                "speech_missed": sd[0] / max(sd[2], 1), "speech_false_alarm": sd[1] / max(sd[2], 1),
                "count_right": sum(n_ref[u] == n_hyp[u] for u in names) / len(names)}

    per_file = {}
    rep = score(ref, hyps, (0.0, 0.25))
    for u, r in ref.items():
        cnt = np.zeros(int(max(e for _, e, _ in r) * 100) + 2, int)
        for a, b, _ in r:
            cnt[int(round(a * 100)) : int(round(b * 100))] += 1
        per_file[u] = {"ref_speakers": n_ref[u], "hyp_speakers": n_hyp[u], "der": rep.files[u][0].der,
                       "der_collar025": rep.files[u][1].der, "jer": rep.files[u][0].jer,
                       "overlap_share": float(np.maximum(cnt - 1, 0).sum() / max(cnt.sum(), 1))}
    names = list(ref)
    trn = [u for u in names if u.startswith("trn")]
    return {"audio_s": audio_s, "cpu_s": run.cpu, "wall_s": run.wall, "x_cpu": audio_s / run.cpu,
            "all": part(names), "trn": part(trn), "held_out": part([u for u in names if u not in trn]),
            "two_speakers": part([u for u in names if n_ref[u] == 2]), "files": per_file,
            "overlap_share": sum(f["overlap_share"] * sum(b - a for a, b, _ in ref[u]) for u, f in per_file.items())
            / sum(b - a for r in ref.values() for a, b, _ in r)}


def print_real(r) -> None:
    print(f"\nembedded on real recordings ({len(r['files'])} files, {r['audio_s']:.0f} s), no speaker-count hint")
    print(f"  x realtime per core: {r['x_cpu']:.1f} (CPU time)   {r['audio_s'] / r['wall_s']:.1f} (wall)")
    print(f"  {'file':<8} {'ref':>3} {'hyp':>3} {'DER %':>6} {'c.25 %':>6} {'JER %':>6} {'overlap %':>9}")
    for u, f in r["files"].items():
        print(f"  {u:<8} {f['ref_speakers']:>3} {f['hyp_speakers']:>3} {100 * f['der']:>6.1f} "
              f"{100 * f['der_collar025']:>6.1f} {100 * f['jer']:>6.1f} {100 * f['overlap_share']:>9.1f}")
    for name in ("all", "trn", "held_out", "two_speakers"):
        p = r[name]
        if p:
            print(f"  {name:<12} ({p['files']:>2} files): DER {100 * p['der']:5.1f} % (miss {100 * p['missed']:.1f}, "
                  f"FA {100 * p['false_alarm']:.1f}, confusion {100 * p['confusion']:.1f})  collar 0.25 "
                  f"{100 * p['der_collar025']:5.1f} %  JER {100 * p['jer']:5.1f} %  count right "
                  f"{100 * p['count_right']:.0f} %")
    p = r["all"]
    print(f"  speech detection alone, all files: {100 * p['speech_missed']:.1f} % of the reference speech missed, "
          f"{100 * p['speech_false_alarm']:.1f} % false alarm")
    print(f"  overlapped share of reference speech: {100 * r['overlap_share']:.1f} % (a second speaker is emitted where segmentation-3.0 hears two; "
          "without it, by none)")


def bench_pyannote(dialogs, checkpoint: Path, full_s: float, sample_pairs: int, score_it: bool):
    import torch

    from pipelines.stages.der import score
    from pipelines.stages.diarize import DiarizeConfig, PyannoteDiarizer

    with Clock() as load:
        pd = PyannoteDiarizer(DiarizeConfig(backend="pyannote", checkpoint=str(checkpoint)))
    pipe = pd.pipeline
    seg_inf = pipe._segmentation  # Inference(duration=10 s, step=1 s, skip_aggregation=True)
    files = [{"waveform": torch.from_numpy(m)[None], "sample_rate": SR} for _, m, _ in dialogs]
    seg_inf(files[0])  # warm-up
    n_pairs = 0
    segs = []
    with Clock() as seg:
        for f in files:
            s = seg_inf(f)
            segs.append(s)
            n_pairs += s.data.shape[0] * s.data.shape[2]
    # the pipeline's embedding call on real (chunk, speaker) pairs of this audio, with masks from segmentation
    chunk = int(seg_inf.duration * SR)
    step = int(seg_inf.step * SR)
    wav, masks = [], []
    for f, s in zip(files, segs):
        for c in range(s.data.shape[0]):
            x = f["waveform"][0, c * step : c * step + chunk]
            x = torch.nn.functional.pad(x, (0, chunk - len(x)))
            for k in range(s.data.shape[2]):
                wav.append(x[None])
                masks.append(torch.from_numpy(np.nan_to_num(s.data[c, :, k]).astype(np.float32)))
            if len(wav) >= sample_pairs:
                break
        if len(wav) >= sample_pairs:
            break
    wav, masks = torch.stack(wav[:sample_pairs]), torch.stack(masks[:sample_pairs])
    pipe._embedding(wav[:2], masks=masks[:2])  # warm-up
    with Clock() as emb:
        pipe._embedding(wav, masks=masks)
    emb_cpu = emb.cpu / len(wav) * n_pairs
    emb_wall = emb.wall / len(wav) * n_pairs
    res = {"load_s": load.wall, "seg_cpu_s": seg.cpu, "seg_wall_s": seg.wall, "pairs": n_pairs,
           "pairs_timed": len(wav), "emb_cpu_s": emb_cpu, "emb_wall_s": emb_wall}
    if full_s > 0:
        clip = dialogs[0][1][: int(full_s * SR)]
        with Clock() as full:
            pd.diarize(clip, SR)
        res.update(full_audio_s=len(clip) / SR, full_cpu_s=full.cpu, full_wall_s=full.wall)
    if score_it:
        hyps = pd.diarize_many([m for _, m, _ in dialogs])
        rep = score({u: r for u, _, r in dialogs}, {u: h for (u, _, _), h in zip(dialogs, hyps)}, (0.0, 0.25))
        res["der"] = {str(s.collar): s.der for s in rep.overall}
    return res


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dialogs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--checkpoint", help="pyannote community-1-style directory (default: random weights, built here)")
    ap.add_argument("--full-s", type=float, default=15.0, help="seconds for the end-to-end pyannote run (0: skip)")
    ap.add_argument("--sample-pairs", type=int, default=24, help="(chunk, speaker) pairs timed for the embedding")
    ap.add_argument("--pyannote-der", action="store_true", help="run pyannote on every dialog and score it (slow)")
    ap.add_argument("--no-pyannote", action="store_true")
    ap.add_argument("--real", default=str(ROOT / "tests" / "data" / "diarization"),
                    help="directory of real recordings (*.flac) with reference.rttm")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "out" / "diarize.json"))
    a = ap.parse_args()
    # random-weight models make pyannote's pooling/clustering warn about degenerate statistics: not news here
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=RuntimeWarning)

    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    with tempfile.TemporaryDirectory(prefix="matalu-bench-diarize-") as tmp:
        tmp = Path(tmp)
        dialogs = make_dialogs(tmp, a.dialogs, a.seed)
        audio_s = sum(len(m) for _, m, _ in dialogs) / SR
        print(f"{len(dialogs)} synthetic dialogs (te vs te+f3), {audio_s:.1f} s of audio; torch threads: "
              f"{torch.get_num_threads()}; CPUs on this machine: {os.cpu_count()}; load avg {os.getloadavg()[0]:.1f}")
        e = bench_embedded(dialogs)
        e_x, e_wx = audio_s / e["cpu_s"], audio_s / e["wall_s"]
        print("\nembedded (Silero VAD + segmentation-3.0 + resemblyzer VoiceEncoder + spectral clustering + Viterbi)")
        print(f"  x realtime per core: {e_x:8.1f} (CPU time)   {e_wx:8.1f} (wall)   VAD alone {audio_s / e['vad_cpu_s']:.0f}x")
        print(f"  DER collar 0: {100 * e['der']['0.0']:.2f} %  (miss {100 * e['missed']:.2f}, FA {100 * e['false_alarm']:.2f}, "
              f"confusion {100 * e['confusion']:.2f})   DER collar 0.25: {100 * e['der']['0.25']:.2f} %   "
              f"JER: {100 * e['jer']['0.0']:.2f} %")
        print(f"  speakers found per dialog: {e['speakers_found']} (count right {100 * e['count_right']:.0f} %)")
        real = bench_real(load_real(Path(a.real)))
        print_real(real)
        result = {"audio_s": audio_s, "dialogs": len(dialogs), "cpu": os.cpu_count(), "embedded": e,
                  "embedded_x_cpu": e_x, "embedded_x_wall": e_wx, "real": real}
        if not a.no_pyannote:
            if a.checkpoint:
                ckpt, kind = Path(a.checkpoint), "checkpoint " + a.checkpoint
            else:
                from tests.pyannote_checkpoint import build_checkpoint

                ckpt, kind = build_checkpoint(tmp / "pyannote"), "community-1 architectures, random weights"
            p = bench_pyannote(dialogs, ckpt, a.full_s, a.sample_pairs, a.pyannote_der)
            seg_x, emb_x = audio_s / p["seg_cpu_s"], audio_s / p["emb_cpu_s"]
            both_cpu = p["seg_cpu_s"] + p["emb_cpu_s"]
            both_x = audio_s / both_cpu
            print(f"\npyannote.audio SpeakerDiarization ({kind}), same audio")
            print(f"  segmentation (PyanNet, its sliding Inference):    {seg_x:8.2f} x realtime per core")
            print(f"  embedding (WeSpeakerResNet34, {p['pairs']} chunk-speaker pairs, "
                  f"{p['pairs_timed']} timed): {emb_x:8.3f} x realtime per core")
            print(f"  segmentation + embedding:                          {both_x:8.3f} x realtime per core "
                  f"(wall {audio_s / (p['seg_wall_s'] + p['emb_wall_s']):.3f})")
            if "full_cpu_s" in p:
                print(f"  full pipeline end to end on {p['full_audio_s']:.0f} s: "
                      f"{p['full_audio_s'] / p['full_cpu_s']:.3f} x realtime per core (wall {p['full_audio_s'] / p['full_wall_s']:.3f}; "
                      f"a clip this short has fewer 10 s chunks per second than long audio)")
            if "der" in p:
                print(f"  DER collar 0: {100 * p['der']['0.0']:.2f} %   collar 0.25: {100 * p['der']['0.25']:.2f} %")
            print("\nratios (embedded / pyannote, CPU time per core)")
            print(f"  vs segmentation + embedding: {e_x / both_x:8.1f}x faster")
            print(f"  vs segmentation alone:       {e_x / seg_x:8.1f}x")
            if "full_cpu_s" in p:
                print(f"  vs full pipeline:            {e_x / (p['full_audio_s'] / p['full_cpu_s']):8.1f}x")
            result.update(pyannote=p, pyannote_x_cpu=both_x, ratio=e_x / both_x)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
