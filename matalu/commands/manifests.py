"""`matalu manifests ls | show | stats | sample`."""

from __future__ import annotations

import json
import random
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("manifests", help="browse a run's manifests")
    ms = p.add_subparsers(dest="mcmd", required=True)
    from matalu.commands import manifests_web

    manifests_web.add_subcommands(ms)  # serve | report | licenses | export
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


def run(args) -> int:
    from matalu.commands import manifests_web

    r = manifests_web.run(args)
    if r is not None:
        return r
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
        from storage.audio import decode_audio

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
        if row.get("tar_offset") is not None and row.get("tar_bytes"):  # one ranged read, not the whole shard
            members = storage.read_sample_at(row["shard"], row["tar_offset"], row["tar_bytes"], row["sample_id"])
        else:  # a manifest written before samples recorded where they are
            members = dict(storage.iter_shard(row["shard"])).get(row["sample_id"], {})
        if "flac" not in members:
            raise SystemExit(f"sample {row['sample_id']} is listed in the manifest but has no audio in {row['shard']}")
        audio, sr = decode_audio(members["flac"])
        sf.write(args.output, audio.T, sr, subtype="PCM_16")
        print(json.dumps(json.loads(members["json"]), ensure_ascii=False, indent=2))
        print(f"wrote {args.output}: {audio.shape[1] / sr:.2f} s, {audio.shape[0]} channel(s), {sr} Hz", file=sys.stderr)
        return 0
    return 2
