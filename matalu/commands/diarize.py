"""`matalu diarize AUDIO`: who spoke when, as RTTM (and optionally the dialog turns with roles)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("diarize", help="speaker diarization of one audio file -> RTTM")
    p.add_argument("audio", help="audio file (any container FFmpeg or libsndfile reads; local path or s3:// URI)")
    p.add_argument("--rttm", metavar="OUT", help="write the RTTM here (default: print it)")
    p.add_argument("--backend", choices=["embedded", "pyannote"], default="embedded",
                   help="embedded: Silero VAD + segmentation-3.0 + resemblyzer + clustering, CPU, no downloads (default); "
                        "pyannote: pyannote.audio's pipeline from --checkpoint")
    p.add_argument("--checkpoint", metavar="PATH",
                   help="pyannote backend: local directory laid out like pyannote/speaker-diarization-community-1")
    p.add_argument("--segmentation", metavar="MODEL", default="auto",
                   help="embedded backend: pyannote segmentation-3.0 for quiet speech and overlap: auto (the copy "
                        "installed by make setup; default), off, or a local pytorch_model.bin / its folder")
    p.add_argument("--num-speakers", type=int, metavar="N", help="the number of speakers, when known")
    p.add_argument("--min-speakers", type=int, metavar="N", help="lower bound when the number is found automatically")
    p.add_argument("--max-speakers", type=int, metavar="N", help="upper bound when the number is found automatically")
    p.add_argument("--uri", help="recording name in the RTTM (default: the file's stem)")
    p.add_argument("--turns", action="store_true",
                   help="also derive dialog turns (system = the speaker who talks more) and print them as JSON")
    p.add_argument("--json", action="store_true", help="print segments (and turns) as JSON instead of a summary")


def run(args) -> int:
    import storage
    from pipelines.stages.decode import DecodeError, decode_bytes, stream_mono
    from pipelines.stages.diarize import DiarizeConfig, get_diarizer, to_mono16k
    from pipelines.stages.rttm import format_rttm, safe_uri

    cfg = DiarizeConfig(backend=args.backend, checkpoint=args.checkpoint, num_speakers=args.num_speakers)
    cfg.segmentation.model = args.segmentation
    if args.min_speakers is not None:
        cfg.min_speakers = args.min_speakers
    if args.max_speakers is not None:
        cfg.max_speakers = args.max_speakers
    cfg.validate()
    local = "://" not in args.audio
    if local and not Path(args.audio).exists():
        raise FileNotFoundError(f"audio file {args.audio} does not exist")
    uri = safe_uri(args.uri or Path(args.audio.rstrip("/")).stem)
    t0 = time.perf_counter()
    diarizer = get_diarizer(cfg)
    t1 = time.perf_counter()
    try:
        if local and cfg.backend == "embedded":  # decoded block by block: memory stays bounded on long media
            n = 0

            def blocks():
                nonlocal n
                for b in stream_mono(args.audio, 16000):
                    n += len(b)
                    yield b

            segments = diarizer.diarize_stream(blocks())
        else:
            dec = decode_bytes(storage.read_bytes(args.audio), args.audio, 16000)
            audio = to_mono16k(dec.audio, 16000)
            n = len(audio)
            segments = diarizer.diarize(audio, 16000)
    except DecodeError as e:
        raise ValueError(f"cannot decode {args.audio}: {e.detail}") from None
    t2 = time.perf_counter()
    rttm = format_rttm(segments, uri)
    if args.rttm:
        Path(args.rttm).parent.mkdir(parents=True, exist_ok=True)
        Path(args.rttm).write_text(rttm, encoding="utf-8")
    turns = None
    if args.turns:
        from pipelines.stages.turns import diarization_to_turns

        turns = [t.to_dict() for t in diarization_to_turns(segments)]
    dur = n / 16000
    if args.json:
        print(json.dumps({"uri": uri, "duration_s": round(dur, 3), "backend": cfg.backend,
                          "segments": [{"start_s": s, "end_s": e, "speaker": k} for s, e, k in segments],
                          **({"turns": turns} if turns is not None else {})}, ensure_ascii=False, indent=2))
    elif not args.rttm:
        sys.stdout.write(rttm)
    if not args.json:
        talk: dict[str, float] = {}
        for s, e, k in segments:
            talk[k] = talk.get(k, 0.0) + (e - s)
        out = sys.stdout if args.rttm else sys.stderr
        print(f"{uri}: {dur:.1f} s, {len(talk)} speaker(s), {len(segments)} segments "
              f"({cfg.backend}; models {t1 - t0:.1f} s, diarization {t2 - t1:.2f} s = {dur / max(t2 - t1, 1e-9):.0f}x realtime)",
              file=out)
        for k in sorted(talk):
            print(f"  {k}: {talk[k]:.1f} s", file=out)
        if args.rttm:
            print(f"wrote {args.rttm}", file=out)
        if turns is not None:
            print(json.dumps(turns, ensure_ascii=False, indent=2), file=out)
    return 0
