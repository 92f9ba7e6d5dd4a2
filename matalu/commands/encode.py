"""`matalu encode`: segment shards -> codec token shards + manifests (pipelines/encode.py)."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser("encode", help="encode segment shards into codec token shards (Ray Data, GPU when present)")
    p.add_argument("--segments", required=True, help="an ingest output (its segments/) or a folder of segment shards")
    p.add_argument("--codec", required=True,
                   help="codec.pt / codec training output / TorchScript file / module:factory / encodec|dac|mimi:PATH")
    p.add_argument("--out", required=True, help="output URI; tokens go to OUT/tokens/<codec_id>/")
    p.add_argument("--address", help="Ray address: auto, ray://host:10001; default: RAY_ADDRESS or a local Ray")
    p.add_argument("--num-workers", type=int, help="encoding actors (default: one per GPU, else one per CPU)")
    p.add_argument("--num-cpus", type=int, help="CPUs of a local Ray started by this command")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--gpu", dest="use_gpu", action="store_const", const=True, help="require GPUs (one per actor)")
    g.add_argument("--cpu", dest="use_gpu", action="store_const", const=False, help="CPU actors even when GPUs exist")
    p.add_argument("--batch-seconds", type=float, help="padded audio seconds per encode batch (default 240)")
    p.add_argument("--exclude-license", action="append", default=[], metavar="PATTERN",
                   help="leave out samples whose license matches (glob, repeatable), e.g. 'CC-BY-NC*'; "
                        "reported as rejects")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--pipeline", dest="pipeline", action="store_const", const=True,
                     help="the streaming pipeline (CPU decode tasks -> encoding actors -> CPU write tasks); the "
                          "default on GPUs")
    how.add_argument("--actor-per-unit", dest="pipeline", action="store_const", const=False,
                     help="one actor reads, decodes, encodes and writes each segment shard; the default on CPUs "
                          "(faster there: benchmarks/RESULTS.md, issue [14])")
    p.add_argument("--actor-cpus", type=float, help="CPUs (torch threads) per CPU encoding actor (default: CPUs / actors)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16 autocasts the encoder (GPU; changes some codes: see benchmarks/encode.py --variants)")
    p.add_argument("--compile", action="store_true", help="torch.compile the encoder (GPU)")
    p.add_argument("--compile-mode", default="", help="torch.compile mode, e.g. reduce-overhead (CUDA graphs)")
    p.add_argument("--s3-endpoint-url", help="S3-compatible endpoint (MinIO, Ceph)")


def run(args) -> int:
    from pipelines.encode import EncodeConfig, run_encode

    cfg = EncodeConfig(segments=args.segments, codec=args.codec, out=args.out, address=args.address,
                       num_workers=args.num_workers, num_cpus=args.num_cpus, use_gpu=args.use_gpu,
                       exclude_licenses=list(args.exclude_license), pipeline=args.pipeline,
                       actor_cpus=args.actor_cpus, precision=args.precision, compile=args.compile,
                       compile_mode=args.compile_mode)
    if args.batch_seconds:
        cfg.batch_seconds = args.batch_seconds
    if args.s3_endpoint_url:
        cfg.storage = {"endpoint_url": args.s3_endpoint_url}
    res = run_encode(cfg, command="matalu " + " ".join(sys.argv[1:]), progress=sys.stderr.isatty())
    print(f"\nTokens: {res.out}/<source>/<kind>/*.tar  (codec {res.codec_id})")
    print(f"  manifests: {res.out}/manifests/{{samples,shards,rejects,runs}}.parquet ; counts {res.counts}")
    if not res.committed:
        print("The run did NOT commit (see messages above); rerun the same command to retry.", file=sys.stderr)
        return 1
    return 0
