"""`matalu der REF.rttm HYP.rttm`: diarization error rate (and JER) with pyannote.metrics."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser("der", help="DER / JER of a hypothesis RTTM against a reference RTTM")
    p.add_argument("ref", help="reference RTTM")
    p.add_argument("hyp", help="hypothesis RTTM")
    p.add_argument("--collar", type=float, action="append", metavar="S",
                   help="collar in seconds, total width centred on each reference boundary as in pyannote.metrics "
                        "(repeatable; default: 0 and 0.25)")
    p.add_argument("--skip-overlap", action="store_true", help="do not score overlapped speech (default: scored)")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")


def run(args) -> int:
    from pipelines.stages.der import COLLARS, render, score
    from pipelines.stages.rttm import read_rttm

    ref, hyp = read_rttm(args.ref), read_rttm(args.hyp)
    if not ref:
        raise ValueError(f"{args.ref} holds no SPEAKER lines: nothing to score against")
    collars = tuple(args.collar) if args.collar else COLLARS
    if any(c < 0 for c in collars):
        raise ValueError("--collar must be >= 0")
    rep = score(ref, hyp, collars, skip_overlap=args.skip_overlap)
    if args.json:
        print(json.dumps(rep.to_dict(), indent=2))
    else:
        render(rep)
    return 0
