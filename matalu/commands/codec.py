"""`matalu codec train | eval | export`: our codec's training (Ray Train), evaluation and TorchScript export."""

from __future__ import annotations

import json
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("codec", help="train, evaluate or export a codec")
    csub = p.add_subparsers(dest="codec_cmd", required=True)

    t = csub.add_parser("train", help="train our RVQ codec on segment shards (Ray Train TorchTrainer)")
    t.add_argument("--config", help="YAML/JSON codec train config (codec/train.py CodecTrainConfig)")
    t.add_argument("--data", help="segment shards: an ingest output or a folder of *.tar (default: config's data)")
    t.add_argument("--out", help="checkpoint/resume URI (local or s3://); default: config's out")
    t.add_argument("--num-workers", type=int, help="Ray Train workers (DDP)")
    t.add_argument("--gpu", action="store_true", help="one GPU per worker, bf16 autocast")
    t.add_argument("--steps", type=int, help="train until this step (resumes from the latest checkpoint)")
    t.add_argument("--size", choices=["tiny", "base"], help="model size preset")
    t.add_argument("--local", action="store_true", help="train in this process, without Ray")
    t.add_argument("--address", help="Ray address (default: RAY_ADDRESS or a local Ray)")

    e = csub.add_parser("eval", help="mel distance, SI-SDR, STOI, PESQ-WB, bitrate, codebook use, speed")
    e.add_argument("--codec", required=True, help="codec.pt / training output / TorchScript file / module:factory")
    e.add_argument("--data", required=True, help="segment shards (an ingest output or a folder of *.tar)")
    e.add_argument("--max-samples", type=int, default=32)
    e.add_argument("--max-seconds", type=float, default=10.0, help="clip length cap")
    e.add_argument("--dialog", action="store_true", help="also evaluate each channel of dialog windows")
    e.add_argument("--device", default="cuda" if _cuda() else "cpu")
    e.add_argument("--json", help="write the results here (local path or s3://)")

    x = csub.add_parser("export", help="export a codec checkpoint")
    x.add_argument("--codec", required=True, help="codec.pt or training output")
    x.add_argument("--torchscript", required=True, metavar="OUT", help="write a TorchScript file here")


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def run(args) -> int:
    return {"train": _train, "eval": _eval, "export": _export}[args.codec_cmd](args)


def _train(args) -> int:
    from codec.train import load_train_config, train_local, train_ray

    cfg = load_train_config(args.config)
    if args.data:
        cfg.data = args.data
    if args.out:
        cfg.out = args.out
    if args.num_workers:
        cfg.num_workers = args.num_workers
    if args.gpu:
        cfg.use_gpu = True
    if args.steps:
        cfg.steps = args.steps
    if args.size:
        cfg.size = args.size
    if not cfg.data:
        raise ValueError("no training data: pass --data SEGMENTS_URI (or set data in the config)")
    cfg.codec_config()  # validate early
    if args.local:
        def log(m: dict) -> None:
            if m["step"] % 10 == 0 or m["step"] == cfg.steps:
                print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()}), flush=True)

        res = train_local(cfg, cfg.data, cfg.steps, out=cfg.out, log=log)
        print(f"[codec] step {res.step}, codec_id {res.model.codec_id}, checkpoint {res.checkpoint or '(none)'}")
        return 0
    import ray

    if not ray.is_initialized():
        ray.init(address=args.address) if args.address else ray.init()
    result = train_ray(cfg, cfg.data, cfg.steps, cfg.out, num_workers=cfg.num_workers, use_gpu=cfg.use_gpu)
    if result.error is not None:
        print(f"matalu codec train: training failed: {result.error}", file=sys.stderr)
        return 1
    print(f"[codec] done: {json.dumps(result.metrics)}")
    print(f"[codec] checkpoints: {cfg.out}/checkpoints/ (latest.json); encode with: "
          f"matalu encode --segments {cfg.data} --codec {cfg.out} --out OUT")
    return 0


def _eval(args) -> int:
    from codec.adapters import load_codec
    from codec.eval import evaluate, render, write_json

    codec = load_codec(args.codec, args.device)
    res = evaluate(codec, args.data, max_samples=args.max_samples, max_seconds=args.max_seconds,
                   use_dialog=args.dialog, device=args.device)
    print(render(res))
    if args.json:
        write_json(res, args.json)
        print(f"[codec] wrote {args.json}")
    return 0


def _export(args) -> int:
    from codec.adapters import export_torchscript, load_codec
    from codec.model import CodecModel

    model = load_codec(args.codec, "cpu")
    if not isinstance(model, CodecModel):
        raise ValueError(f"{args.codec} is not a matalu codec checkpoint (only those can be exported)")
    cid = export_torchscript(model, args.torchscript)
    print(f"[codec] wrote {args.torchscript} (codec_id {cid})")
    return 0
