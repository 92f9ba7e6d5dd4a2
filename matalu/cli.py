"""The ``matalu`` command. Thin: parses arguments, then calls the packages (DESIGN §10)."""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path


def _add_ingest(sub) -> None:
    p = sub.add_parser("ingest", help="run the ingestion job: sources -> segment shards + manifests")
    p.add_argument("--config", help="YAML config (see configs/ingest.yaml); flags below override it")
    p.add_argument("--source", action="append", default=None, metavar="NAME",
                   help="source to ingest (repeatable); default: synthetic")
    p.add_argument("--out", help="output directory or s3://bucket/prefix (default data/out)")
    p.add_argument("--address", help="Ray address: auto, ray://host:10001; default: RAY_ADDRESS or a local Ray")
    p.add_argument("--num-workers", type=int, help="unit-processing actors (default: one per CPU)")
    p.add_argument("--num-cpus", type=int, help="CPUs of a local Ray started by this command")
    p.add_argument("--sources-dir", help="where recipes download/extract/synthesize (default data/sources)")
    p.add_argument("--texts", help="synthetic source: your own JSONL of {\"q\": ..., \"a\": ...} pairs")
    p.add_argument("--dialogs", type=int, help="synthetic source: number of dialogs")
    p.add_argument("--manifest", help="manifest source: CSV/TSV/JSONL listing your audio")
    p.add_argument("--s3-endpoint-url", help="S3-compatible endpoint (MinIO, Ceph); credentials come from the AWS chain")
    p.add_argument("--unit-size", type=int, help="recordings per work unit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _ingest(args) -> int:
    from pipelines.config import SourceSpec, load_config
    from pipelines.ingest import run_ingest

    cfg = load_config(args.config)
    if args.source:
        old = {s.name: s for s in cfg.sources}
        cfg.sources = [old.get(n, SourceSpec(n)) for n in args.source]
    for name in ("out", "address", "num_workers", "num_cpus", "sources_dir", "unit_size"):
        v = getattr(args, name)
        if v is not None:
            setattr(cfg, name, v)
    for spec in cfg.sources:
        if spec.name == "synthetic":
            if args.texts:
                spec.options["texts"] = str(Path(args.texts).resolve())
            if args.dialogs:
                spec.options["n_dialogs"] = args.dialogs
        if spec.name == "manifest" and args.manifest:
            spec.options["path"] = str(Path(args.manifest).resolve())
    if args.s3_endpoint_url:
        from storage import StorageOptions

        cfg.storage = StorageOptions(endpoint_url=args.s3_endpoint_url, region=cfg.storage.region)
    cfg.validate()
    res = run_ingest(cfg, command="matalu " + " ".join(sys.argv[1:]), progress=not args.no_progress and sys.stderr.isatty())
    from manifests.stats import compute, render

    print(f"\nOutput: {res.out}")
    print(f"  shards:    {res.out}/segments/<source>/<kind>/*.tar")
    print(f"  manifests: {res.out}/manifests/{{recordings,samples,shards,rejects,runs}}.parquet")
    print(f"  look at it: matalu manifests stats {res.out} ; matalu manifests sample {res.out} -o sample.wav\n")
    render(compute(res.out))
    if not res.committed:
        print("\nThe run did NOT commit (see messages above); rerun the same command to retry.", file=sys.stderr)
        return 1
    return 0


def _add_manifests(sub) -> None:
    p = sub.add_parser("manifests", help="browse a run's manifests")
    ms = p.add_subparsers(dest="mcmd", required=True)
    a = ms.add_parser("ls", help="list shards")
    a.add_argument("uri")
    a = ms.add_parser("show", help="print rows of a manifest table")
    a.add_argument("uri")
    a.add_argument("--table", default="samples", choices=["recordings", "samples", "shards", "rejects", "runs"])
    a.add_argument("--limit", type=int, default=20)
    a.add_argument("--where", action="append", default=[], metavar="COL=VALUE", help="filter (repeatable)")
    a.add_argument("--json", action="store_true", help="one JSON object per row")
    a = ms.add_parser("stats", help="hours by source/kind/speaker/license, shards, rejects by reason")
    a.add_argument("uri")
    a.add_argument("--json", action="store_true")
    a = ms.add_parser("sample", help="write one sample's audio to a WAV and print its JSON")
    a.add_argument("uri")
    a.add_argument("sample_id", nargs="?", help="default: a random sample (see --seed)")
    a.add_argument("-o", "--output", default="sample.wav")
    a.add_argument("--kind", choices=["mono", "dialog"])
    a.add_argument("--seed", type=int, default=0)


def _manifests(args) -> int:
    import pandas as pd

    from manifests.io import read_table, resolve_table_uri
    from manifests.rows import ROW_TYPES, Sample

    if args.mcmd == "stats":
        from manifests.stats import compute, render

        st = compute(args.uri)
        if args.json:
            print(json.dumps(st.to_dict(), ensure_ascii=False, indent=2, default=str))
        else:
            render(st)
        return 0
    if args.mcmd == "ls":
        df = read_table(resolve_table_uri(args.uri, "shards"), ROW_TYPES["shards"]).to_pandas()
        pd.set_option("display.width", 200)
        pd.set_option("display.max_colwidth", 120)
        if df.empty:
            print("no shards")
            return 0
        df = df.assign(MB=(df["bytes"] / 1e6).round(2), sha256=df["sha256"].str[:12])
        print(df[["uri", "sample_kind", "n_samples", "seconds", "MB", "sha256"]].to_string(index=False))
        print(f"\n{len(df)} shards, {df['n_samples'].sum()} samples, {df['seconds'].sum() / 3600:.3f} h, {df['bytes'].sum() / 1e6:.1f} MB")
        return 0
    if args.mcmd == "show":
        df = read_table(resolve_table_uri(args.uri, args.table), ROW_TYPES[args.table]).to_pandas()
        for w in args.where:
            col, _, val = w.partition("=")
            if col not in df.columns:
                raise SystemExit(f"--where: no column {col!r} in {args.table}; columns: {', '.join(df.columns)}")
            df = df[df[col].astype(str) == val]
        df = df.head(args.limit)
        if args.json:
            for rec in df.to_dict(orient="records"):
                print(json.dumps(rec, ensure_ascii=False, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
        else:
            pd.set_option("display.width", 200)
            pd.set_option("display.max_colwidth", 60)
            print(df.to_string(index=False))
        return 0
    if args.mcmd == "sample":
        import soundfile as sf

        import storage
        from pipelines.stages.flac import decode_flac

        rows = read_table(resolve_table_uri(args.uri, "samples"), Sample).to_pylist()
        if args.kind:
            rows = [r for r in rows if r["kind"] == args.kind]
        if not rows:
            raise SystemExit("no samples in that manifest")
        if args.sample_id:
            match = [r for r in rows if r["sample_id"] == args.sample_id]
            if not match:
                raise SystemExit(f"no sample {args.sample_id!r} in {args.uri}")
            row = match[0]
        else:
            row = random.Random(args.seed).choice(rows)
        members = dict(storage.iter_shard(row["shard"]))
        if row["sample_id"] not in members:
            raise SystemExit(f"sample {row['sample_id']} is listed in the manifest but missing from {row['shard']}")
        audio, sr = decode_flac(members[row["sample_id"]]["flac"])
        sf.write(args.output, audio.T, sr, subtype="PCM_16")
        print(json.dumps(json.loads(members[row["sample_id"]]["json"]), ensure_ascii=False, indent=2))
        print(f"wrote {args.output}: {audio.shape[1] / sr:.2f} s, {audio.shape[0]} channel(s), {sr} Hz", file=sys.stderr)
        return 0
    return 2


def _add_sources(sub) -> None:
    p = sub.add_parser("sources", help="the corpus recipes")
    ss = p.add_subparsers(dest="scmd", required=True)
    ss.add_parser("list", help="name, hours, license, access, sample kind")


def _sources(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from pipelines import sources

    t = Table(title="sources")
    for c in ("name", "hours", "license", "access", "kind", "description"):
        t.add_column(c)
    for n in sources.names():
        info = sources.get(n).INFO
        t.add_row(*[str(info.get(c, "")) for c in ("name", "hours", "license", "access", "kind", "description")])
    Console().print(t)
    return 0


def _submit(argv: list[str]) -> int:
    from matalu.submit import submit

    address, python, wait, rest = None, None, True, []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--address", "--python") and i + 1 < len(argv):
            if a == "--address":
                address = argv[i + 1]
            else:
                python = argv[i + 1]
            i += 2
            continue
        if a.startswith("--address="):
            address = a.split("=", 1)[1]
        elif a.startswith("--python="):
            python = a.split("=", 1)[1]
        elif a == "--no-wait":
            wait = False
        elif a in ("-h", "--help") and not rest:
            print("usage: matalu submit SUBCOMMAND [ARGS…] --address http://HEAD:8265 [--python PATH] [--no-wait]\n\n"
                  "Runs `matalu SUBCOMMAND ARGS…` as a Ray job (Jobs API, working_dir = this repo), follows its\n"
                  "logs and exits with the job's status. Local paths in --out/--config/… are made absolute.")
            return 0
        else:
            rest.append(a)
        i += 1
    if not address:
        raise SystemExit("matalu submit: --address http://HEAD:8265 (the Ray dashboard / Jobs API address) is required")
    return submit(address, rest, python=python, wait=wait)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "submit":
        return _submit(argv[1:])
    parser = argparse.ArgumentParser(prog="matalu", description="Telugu speech data pipeline (see README.md)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    _add_ingest(sub)
    _add_manifests(sub)
    _add_sources(sub)
    sub.add_parser("submit", help="run a subcommand as a Ray job: matalu submit ingest … --address http://HEAD:8265")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "ingest":
            return _ingest(args)
        if args.cmd == "manifests":
            return _manifests(args)
        if args.cmd == "sources":
            return _sources(args)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"matalu {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
