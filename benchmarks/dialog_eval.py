"""`matalu lm eval --dialogs`: how well the VAD-measured turn-taking matches the turn labels, and what it costs.

1. **Measurement check**: on held-out dialog windows with known turns (the synthetic source's), the data's own system
   channel is measured exactly as ``lm eval --dialogs`` measures it (the ingest's Silero VAD, ``lm.conversation``)
   and each reply onset is compared with the labelled start of the system turn that answers: signed error (bias),
   |error| p50/p90/max, and replies the VAD missed. The labelled gaps/overlaps and the measured ones side by side.
2. **Cost**: the whole evaluation (respond + VAD + re-encode (+ ASR)) per second of dialog against ``respond`` alone
   on the same dialogs in the same run, with the given models or tiny random ones (``--lm``/``--codec`` omitted:
   a tiny 25 Hz codec with Q=4, K=64 and a tiny LM).

Usage: python benchmarks/dialog_eval.py --dialogs INGEST_OUT [--lm RUN --codec C] [--max-dialogs 4] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def tiny_models():
    import torch

    from codec.model import CodecConfig, CodecModel
    from lm import AudioLM, LMConfig

    torch.manual_seed(0)
    codec = CodecModel(CodecConfig.preset("tiny", strides=[2, 4, 5, 8, 2], num_codebooks=4, codebook_size=64)).eval()
    torch.manual_seed(1)
    lm = AudioLM(LMConfig.preset("tiny", num_codebooks=4, codebook_size=64, delays=[0, 1, 2, 2])).eval()
    return lm, codec


def measurement_check(dialogs, vad) -> dict:
    from lm import conversation as conv
    from lm.dialog_eval import user_regions

    errs, missed, n = [], 0, 0
    gaps = {"labels": [], "vad": []}
    overlaps = {"labels": [], "vad": []}
    for d in dialogs:
        users = user_regions(d)
        (speech,) = vad([d.audio[0]])
        labelled = [(t.start_s, t.end_s) for t in d.turns if t.role == "system"]
        for lab, got in zip(conv.exchanges(users, labelled, d.seconds), conv.exchanges(users, speech, d.seconds)):
            if lab.onset is None:
                continue
            n += 1
            if got.onset is None:
                missed += 1
                continue
            errs.append(got.onset - lab.onset)
            for x, key in ((lab, "labels"), (got, "vad")):
                if x.gap is not None:
                    gaps[key].append(x.gap)
                if x.overlap is not None:
                    overlaps[key].append(x.overlap)
    a = np.abs(np.asarray(errs))
    return {"labelled_replies": n, "missed": missed,
            "onset_error_mean_s": round(float(np.mean(errs)), 4) if errs else None,
            "abs_error_p50_s": round(float(np.percentile(a, 50)), 4) if errs else None,
            "abs_error_p90_s": round(float(np.percentile(a, 90)), 4) if errs else None,
            "abs_error_max_s": round(float(a.max()), 4) if errs else None,
            "gap_s": {k: conv.percentiles(v) for k, v in gaps.items()},
            "overlap_s": {k: conv.percentiles(v) for k, v in overlaps.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dialogs", required=True, help="an ingest output with dialog windows (e.g. the synthetic demo)")
    ap.add_argument("--lm")
    ap.add_argument("--codec")
    ap.add_argument("--max-dialogs", type=int, default=4, help="dialogs for the cost part (the check uses all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from lm.dialog_eval import evaluate_dialogs, held_out_dialogs
    from lm.respond import respond
    from matalu.commands.lm import silero_vad

    vad = silero_vad()
    all_dialogs = list(held_out_dialogs(args.dialogs))
    check = measurement_check(all_dialogs, vad)
    if args.lm:
        from codec.adapters import load_codec
        from lm.checkpoint import load_lm

        model, codec = load_lm(args.lm)[0], load_codec(args.codec)
    else:
        model, codec = tiny_models()
    few = all_dialogs[: args.max_dialogs]
    seconds = sum(d.seconds for d in few)
    t0 = time.perf_counter()
    for i, d in enumerate(few):
        respond(d.audio[1], codec, model, seed=i)
    t_respond = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = evaluate_dialogs(model, codec, iter(few), vad)
    t_eval = time.perf_counter() - t0
    out = {"dialogs_checked": len(all_dialogs), "check": check,
           "cost": {"dialogs": len(few), "audio_s": round(seconds, 2), "respond_s": round(t_respond, 2),
                    "eval_s": round(t_eval, 2), "eval_x_realtime": round(seconds / t_eval, 3),
                    "eval_over_respond": round(t_eval / t_respond, 3), "threads": args.threads,
                    "models": "given" if args.lm else "tiny random (codec 25 Hz Q=4 K=64, LM tiny)"},
           "generated_replied": res["generated"]["replied"], "data_replied": res["data"]["replied"]}
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
