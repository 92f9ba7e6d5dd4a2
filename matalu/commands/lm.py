"""`matalu lm train | tokenizer | eval | respond | serve`: the audio LM over token shards (Ray Train), its text
tokenizer, its loss per stream and conversation metrics on held-out dialogs, a spoken reply to a WAV, and live
conversations over a WebSocket (with a page)."""

from __future__ import annotations

import json
import sys
import time


def add_parser(sub) -> None:
    p = sub.add_parser("lm", help="train, evaluate or run the audio LM")
    lsub = p.add_subparsers(dest="lm_cmd", required=True)

    t = lsub.add_parser("train", help="train the audio LM on token shards (Ray Train TorchTrainer; --local: in-process)")
    t.add_argument("--config", help="configs/lm-*.yaml (a model: and a train: section)")
    t.add_argument("--data", help="token shards: an encode output (its tokens/<codec_id>/) or a folder of *.tar")
    t.add_argument("--out", help="checkpoint/resume URI (local or s3://); default: config's out")
    t.add_argument("--size", choices=["tiny", "125m", "1b"], help="model size preset (default: the config's model)")
    t.add_argument("--steps", type=int, help="train until this step (a finished run with fewer steps resumes)")
    t.add_argument("--num-workers", type=int, help="Ray Train workers")
    t.add_argument("--batch-size", type=int, help="packed windows per worker per micro-step")
    t.add_argument("--grad-accum", type=int, help="micro-steps per optimizer step")
    t.add_argument("--gpu", action="store_true", help="one GPU per worker, bf16")
    t.add_argument("--fsdp", action="store_true", help="FSDP2 (fully_shard) instead of DDP (for 1b)")
    t.add_argument("--local", action="store_true", help="train in this process, without Ray")
    t.add_argument("--init", help="hf:DIR: start the temporal transformer from a local Hugging Face causal LM folder")
    t.add_argument("--lora", type=int, metavar="RANK", help="train low-rank adapters of this rank only")
    t.add_argument("--tokenizer", help="turn the text stream on with this tokenizer (from `matalu lm tokenizer`)")
    t.add_argument("--threads", type=int, help="torch threads (and Ray CPUs) per CPU worker")
    t.add_argument("--address", help="Ray address (default: RAY_ADDRESS or a local Ray)")

    k = lsub.add_parser("tokenizer", help="train the text stream's SentencePiece model on the transcripts")
    k.add_argument("--data", required=True, help="an ingest or encode output (its samples manifest) or shards")
    k.add_argument("--out", default="data/tokenizer", help="folder for tokenizer.model + tokenizer.json")
    k.add_argument("--vocab", type=int, default=4000, help="vocabulary size (an upper bound on small corpora)")

    e = lsub.add_parser("eval", help="loss and perplexity per stream and codebook (--data); conversation metrics "
                                     "of generated replies to held-out dialogs (--dialogs)")
    e.add_argument("--lm", required=True, help="a training output (its latest checkpoint) or a checkpoint folder")
    e.add_argument("--data", help="token shards: the loss table")
    e.add_argument("--dialogs", metavar="HELD_OUT_URI",
                   help="an ingest output (segment shards) with held-out dialog windows: answer each one's user "
                        "channel and measure turn-taking, reply length, silence/babble, codec re-encode consistency")
    e.add_argument("--codec", help="with --dialogs: the codec the LM's tokens came from (checkpoint, .ts, …)")
    e.add_argument("--max-dialogs", type=int, default=32, help="answer at most this many dialogs (0: all)")
    e.add_argument("--asr", metavar="DIR", help="with --dialogs: a local transformers CTC or Whisper model folder; "
                                                "adds the character error rate of the answers")
    e.add_argument("--seed", type=int, default=0, help="dialog i is answered with seed SEED + i")
    e.add_argument("--temperature", type=float, default=0.8)
    e.add_argument("--top-k", type=int, default=250)
    e.add_argument("--split", choices=["all", "val", "train"], default="all",
                   help="val/train: the run's own held-out split of these shards/dialogs (by sample id); all: every "
                        "sample")
    e.add_argument("--batch-size", type=int, default=4)
    e.add_argument("--max-batches", type=int, default=0, help="stop after this many batches (0: one full pass)")
    e.add_argument("--device", default=None)
    e.add_argument("--json", nargs="?", const="-", help="print JSON (or write it to this path / s3:// URI)")

    r = lsub.add_parser("respond", help="speak a reply to IN.wav: OUT.wav is stereo (0 = system, 1 = your input)")
    r.add_argument("input", metavar="IN.wav")
    r.add_argument("--codec", required=True, help="the codec the LM's tokens came from (checkpoint, .ts, …)")
    r.add_argument("--lm", required=True, help="a training output or checkpoint folder")
    r.add_argument("-o", "--out", required=True, metavar="OUT.wav")
    r.add_argument("--temperature", type=float, default=0.8)
    r.add_argument("--top-k", type=int, default=250)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", default=None)

    v = lsub.add_parser("serve", help="talk to it: a full-duplex WebSocket server and a browser page (batched sessions)")
    v.add_argument("--codec", required=True, help="the codec the LM's tokens came from (a streaming codec checkpoint)")
    v.add_argument("--lm", required=True, help="a training output or checkpoint folder")
    v.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    v.add_argument("--port", type=int, default=8998)
    v.add_argument("--max-sessions", type=int, default=4, help="conversations batched at once; more get `busy`")
    v.add_argument("--send-queue", type=int, default=100,
                   help="messages a client may fall behind before it is closed (4003 slow_reader)")
    v.add_argument("--temperature", type=float, default=0.8)
    v.add_argument("--top-k", type=int, default=250)
    v.add_argument("--gpu", action="store_true", help="run the codec and the LM on CUDA")
    v.add_argument("--threads", type=int, help="torch CPU threads")


def _device(d: str | None) -> str:
    if d:
        return d
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run(args) -> int:
    return {"train": _train, "tokenizer": _tokenizer, "eval": _eval, "respond": _respond,
            "serve": _serve}[args.lm_cmd](args)


def _train(args) -> int:
    from lm.train import load_config, train_local, train_ray

    model, cfg = load_config(args.config)
    for flag, name in (("data", "data"), ("out", "out"), ("steps", "steps"), ("num_workers", "num_workers"),
                       ("batch_size", "batch_size"), ("grad_accum", "grad_accum"), ("init", "init"),
                       ("lora", "lora_rank"), ("tokenizer", "tokenizer"), ("threads", "threads_per_worker")):
        v = getattr(args, flag)
        if v:
            setattr(cfg, name, v)
    if args.gpu:
        cfg.use_gpu = True
    if args.fsdp:
        cfg.fsdp = True
    if args.tokenizer:
        cfg.text = True
    if not cfg.data:
        raise ValueError("no training data: pass --data TOKENS_URI (an encode output; or set train.data in the config)")
    if cfg.init and not cfg.init.startswith("hf:"):
        raise ValueError(f"--init {cfg.init}: expected hf:DIR (a local Hugging Face causal LM folder)")
    t0 = time.perf_counter()
    if args.local:
        res = train_local(model, args.size, cfg)
        print(f"[lm] step {res.step} in {time.perf_counter() - t0:.1f} s; checkpoint {res.checkpoint or '(none)'}")
        return 0
    from jobs.cluster import init_ray

    init_ray(args.address)
    import ray.train

    try:
        result = train_ray(model, args.size, cfg)
    except ray.train.TrainingFailedError as e:  # Ray Train v2 raises when the workers failed past max_failures
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        print(f"matalu lm train: training failed: {first}", file=sys.stderr)
        return 1
    if result.error is not None:
        print(f"matalu lm train: training failed: {result.error}", file=sys.stderr)
        return 1
    m = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in (result.metrics or {}).items()}
    print(f"[lm] done in {time.perf_counter() - t0:.1f} s: {json.dumps(m)}")
    print(f"[lm] checkpoints: {cfg.out}/checkpoints/ (latest.json), metrics: {cfg.out}/metrics.jsonl; "
          f"try: matalu lm respond IN.wav --codec CODEC --lm {cfg.out} -o reply.wav")
    return 0


def _tokenizer(args) -> int:
    from lm.text import train_tokenizer

    res = train_tokenizer(args.data, args.out, args.vocab)
    print(f"[lm] tokenizer {res.model_uri}: {res.vocab_size} pieces from {res.sentences} transcripts "
          f"({res.characters} characters); train with --tokenizer {args.out}")
    return 0


def _eval(args) -> int:
    from lm.checkpoint import load_lm
    from lm.evaluate import evaluate, render, write_json

    if not args.data and not args.dialogs:
        raise ValueError("nothing to evaluate: pass --data TOKENS (the loss table) and/or --dialogs HELD_OUT_URI "
                         "(conversation metrics)")
    if args.dialogs and not args.codec:
        raise ValueError("--dialogs needs --codec CODEC: the codec the LM's tokens came from (it encodes the user's "
                         "audio and decodes the replies)")
    dev = _device(args.device)
    loaded = load_lm(args.lm, dev)
    meta = loaded[3]
    res: dict = {"run": args.lm, "checkpoint": meta.get("checkpoint"), "step": meta.get("step")}
    if args.data:
        res = evaluate(args.lm, args.data, split=args.split, batch_size=args.batch_size,
                       max_batches=args.max_batches, device=dev, loaded=loaded)
    if args.dialogs:
        res["dialogs_uri"] = args.dialogs
        res["conversation"] = _conversation(args, loaded, dev)
    if args.json == "-":
        print(json.dumps(res, indent=2, ensure_ascii=False))
        return 0
    if args.data:
        print(f"[lm] {res['run']} step {res['step']} on {res['data']} ({res['split']}): {res['samples']} samples, "
              f"{res['frames']} frames, padding {100 * res['padding_fraction']:.1f}%")
        print(render(res["streams"]))
    if args.dialogs:
        from lm.dialog_eval import render as render_conversation

        print(f"[lm] {res['run']} step {res['step']} on the dialogs of {args.dialogs} ({args.split})")
        print(render_conversation(res["conversation"]))
    if args.json:
        write_json(res, args.json)
        print(f"[lm] wrote {args.json}")
    return 0


def _conversation(args, loaded, dev: str) -> dict:
    from lm.data import is_val
    from lm.dialog_eval import evaluate_dialogs, held_out_dialogs

    model, _cfg, _tok, meta = loaded
    codec = _codec_for(args.codec, dev, meta, args.lm)
    asr = None
    if args.asr:
        from lm.asr import load_asr

        asr = load_asr(args.asr, dev)
    keep = None
    if args.split != "all":
        vf = float(meta.get("train", {}).get("val_fraction", 0.0))
        keep = lambda sid: is_val(sid, vf) == (args.split == "val")  # noqa: E731
    dialogs = held_out_dialogs(args.dialogs, max_dialogs=args.max_dialogs, keep=keep)
    return evaluate_dialogs(model, codec, dialogs, silero_vad(), seed=args.seed, temperature=args.temperature,
                            top_k=args.top_k, asr=asr, progress=lambda s: print(s, file=sys.stderr))


def silero_vad():
    """The ingest pipeline's Silero VAD (its default settings, no padding around speech: onsets are where the
    speech starts) as :mod:`lm.dialog_eval` takes it: 16 kHz clips -> speech regions in seconds. lm may not import
    pipelines (docs/DESIGN.md §2); the CLI, which may import both, hands it over."""
    from pipelines.stages.vad import SileroVad, VadConfig, speech_regions

    cfg = VadConfig(speech_pad_s=0.0)
    vad = SileroVad(cfg.batch_windows, cfg.model_rate, cfg.level_dbfs, cfg.max_gain_db)
    return lambda clips: [speech_regions(p, len(x), cfg) for x, p in zip(clips, vad.probs(clips))]


def _codec_for(spec: str, dev: str, meta: dict, run: str):
    """The codec ``spec`` loaded, refused when the LM's lineage names another codec."""
    from codec.adapters import load_codec

    codec = load_codec(spec, dev)
    cid, trained_on = str(getattr(codec, "codec_id", "")), meta.get("lineage", {}).get("codec_id", "")
    if trained_on and cid and trained_on != cid:
        raise ValueError(f"the LM {run} was trained on tokens of codec {trained_on}, not {cid}; pass that codec")
    return codec


def _respond(args) -> int:
    import numpy as np

    import storage
    from lm.checkpoint import load_lm
    from lm.respond import respond
    from storage.audio import decode_audio, encode_wav, resample

    dev = _device(args.device)
    audio, sr = decode_audio(storage.read_bytes(args.input))
    mono = audio.mean(axis=0, keepdims=True)
    model, _cfg, _tok, meta = load_lm(args.lm, dev)
    codec = _codec_for(args.codec, dev, meta, args.lm)
    t0 = time.perf_counter()
    out = respond(resample(mono, sr, 16000), codec, model, temperature=args.temperature, top_k=args.top_k,
                  seed=args.seed)
    system = resample(np.asarray(out[:1], np.float32), 16000, sr)[0, : audio.shape[1]]
    stereo = np.zeros((2, audio.shape[1]), np.float32)
    stereo[0, : system.shape[0]] = system
    stereo[1] = mono[0]  # channel 1: the user's own input at its own rate
    storage.write_bytes(args.out, encode_wav(stereo, sr))
    print(f"[lm] wrote {args.out}: {audio.shape[1] / sr:.2f} s stereo at {sr} Hz (0 = system, 1 = you) "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


def _serve(args) -> int:
    import torch

    from lm.checkpoint import load_lm
    from lm.serve import Engine, ServeConfig
    from lm.serve_http import ServerOptions, serve_forever

    cfg = ServeConfig(max_sessions=args.max_sessions, temperature=args.temperature, top_k=args.top_k)
    cfg.validate()
    if args.send_queue < 1:
        raise ValueError(f"--send-queue must be at least 1; got {args.send_queue}")
    if args.gpu and not torch.cuda.is_available():
        raise ValueError("--gpu: no CUDA device is visible; drop --gpu to serve on the CPU")
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = "cuda" if args.gpu else "cpu"
    model, _cfg, tok, meta = load_lm(args.lm, dev)
    codec = _codec_for(args.codec, dev, meta, args.lm)
    engine = Engine(codec, model, cfg)
    serve_forever(engine, tok, ServerOptions(host=args.host, port=args.port, send_queue=args.send_queue))
    return 0
