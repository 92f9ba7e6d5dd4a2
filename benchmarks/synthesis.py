"""Synthesis throughput per core of each TTS backend of the synthetic source, and the wall time for N pairs.

For each backend, one process, one thread (``torch.set_num_threads(1)``), speaks the questions and answers of the
first ``--pairs`` bundled Telugu pairs (text normalised as the source does) and reports:

* audio seconds per CPU second and per wall second (x realtime per core);
* the mean audio seconds per pair (question + answer);
* the estimated wall time to speak ``--n`` pairs on 2, 16 and 64 cores from the per-CPU-second rate (each Ray task is
  one process on one CPU; dialog assembly, WAV writing and gaps are extra, measured by ``--dialogs``).

Backends: ``espeak`` (espeak-ng, the default voices), ``mms`` (a random ``VitsModel`` with MMS-TTS's architecture:
``VitsConfig()``'s defaults are facebook/mms-tts-*'s sizes, 36.3 M parameters with a Telugu vocabulary: the same
compute as facebook/mms-tts-tel, not its voice; or ``--mms DIR`` for real weights), ``command`` (the command
backend running ``espeak-ng -w {out} {text}``: the cost of going through a program and a WAV file).
``--dialogs N`` also times ``synthetic.download`` of N dialogs with the default voices on local threads.

Usage: python benchmarks/synthesis.py [--pairs 40] [--n 10000] [--mms DIR] [--dialogs 24] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def random_mms(folder: Path) -> Path:
    """A random VitsModel at the MMS-TTS size (VitsConfig defaults) with a Telugu-character tokenizer."""
    import torch
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    chars = ["<pad>", " "] + [chr(c) for c in range(0x0C00, 0x0C80)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(chars)}, ensure_ascii=False))
    VitsTokenizer(str(folder / "vocab.json"), language="tel", phonemize=False).save_pretrained(folder)
    torch.manual_seed(0)
    model = VitsModel(VitsConfig(vocab_size=len(chars)))
    with torch.no_grad():
        model.decoder.conv_post.weight *= 0.02  # random weights saturate; the compute is the same
    model.save_pretrained(folder)
    return folder


def measure(name: str, spec: str, texts: list[str]) -> dict:
    from pipelines.sources.synthetic import _Speaker
    from pipelines.tts import make_pool

    voices, backends = make_pool([spec])
    say = _Speaker(backends)
    v = voices[0]
    if v.backend.partition(":")[0] == "espeak":
        from pipelines.tts.voices import EspeakBackend

        v = EspeakBackend.in_dialog(v, v.param("pitch")[0], v.param("speed")[0])
    say(texts[0], v)  # warm-up (model load)
    c0, w0 = time.process_time(), time.perf_counter()
    ch0 = os.times()
    audio = 0.0
    for t in texts:
        audio += len(say(t, v)) / 22050
    ch1 = os.times()
    cpu = time.process_time() - c0 + (ch1.children_user - ch0.children_user) + (ch1.children_system - ch0.children_system)
    wall = time.perf_counter() - w0
    return {"backend": name, "utterances": len(texts), "audio_s": round(audio, 1), "cpu_s": round(cpu, 2),
            "wall_s": round(wall, 2), "x_rt_per_cpu_s": round(audio / cpu, 1), "x_rt_per_wall_s": round(audio / wall, 1)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=40)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--mms", help="a real MMS-TTS folder (default: a random model of the same size)")
    ap.add_argument("--dialogs", type=int, default=24)
    ap.add_argument("--json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from pipelines.sources import synthetic

    pairs = synthetic.load_pairs()[: args.pairs]
    texts = [x for p in pairs for x in (p["q"], p["a"])]
    with tempfile.TemporaryDirectory() as d:
        mms = args.mms or str(random_mms(Path(d) / "mms-tts-tel"))
        rows = [measure("espeak", "espeak", texts),
                measure("mms" + ("" if args.mms else " (random, real size)"), f"mms:{mms}", texts),
                measure("command (espeak-ng -w)", "command:espeak-ng -v te -w {out} {text}", texts)]
        for r in rows:
            per_pair = r["audio_s"] / len(pairs)
            r["audio_s_per_pair"] = round(per_pair, 2)
            r["est_wall_h"] = {n: round(args.n * per_pair / (r["x_rt_per_cpu_s"] * n) / 3600, 3) for n in (2, 16, 64)}
        dl = None
        if args.dialogs:
            w0 = time.perf_counter()
            synthetic.download(Path(d) / "syn", n_dialogs=args.dialogs, seed=1, use_ray=False)
            wall = time.perf_counter() - w0
            import soundfile as sf

            secs = sum(sf.info(str(p)).duration for p in (Path(d) / "syn" / "audio").glob("*.wav"))
            dl = {"dialogs": args.dialogs, "wall_s": round(wall, 2), "dialog_audio_s": round(secs, 1),
                  "x_rt_wall_4_threads": round(secs / wall, 1)}
    print(f"{'backend':32} {'utt':>4} {'audio s':>8} {'cpu s':>7} {'wall s':>7} {'x rt/cpu':>9} {'x rt/wall':>9} "
          f"{'s/pair':>7}  est. wall h for {args.n} pairs on 2 / 16 / 64 cores")
    for r in rows:
        e = r["est_wall_h"]
        print(f"{r['backend']:32} {r['utterances']:>4} {r['audio_s']:>8} {r['cpu_s']:>7} {r['wall_s']:>7} "
              f"{r['x_rt_per_cpu_s']:>9} {r['x_rt_per_wall_s']:>9} {r['audio_s_per_pair']:>7}  "
              f"{e[2]} / {e[16]} / {e[64]}")
    if dl:
        print(f"synthetic.download of {dl['dialogs']} default dialogs (4 local threads): {dl['wall_s']} s wall for "
              f"{dl['dialog_audio_s']} s of dialog audio ({dl['x_rt_wall_4_threads']}x realtime)")
    print(f"load average: {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"backends": rows, "download": dl}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
