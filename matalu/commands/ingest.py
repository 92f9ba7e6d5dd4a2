"""`matalu ingest`: the ingestion job."""

from __future__ import annotations

import sys
from pathlib import Path


def add_parser(sub) -> None:
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
    p.add_argument("--voices", action="append", metavar="SPEC",
                   help="synthetic source: voice pool (repeatable): [N*]espeak[:LANG], [N*]mms:DIR, "
                        "[N*]command:'PROGRAM ... {out}'; default 2*espeak")
    p.add_argument("--manifest", help="manifest source: CSV/TSV/JSONL listing your audio")
    p.add_argument("--mirror", help="base URL serving the source's published files (e.g. a local mirror of OpenSLR)")
    p.add_argument("--archive", help="the source's archive or copy you already have: a local path, directory or URL (Common Voice, MUCS, IndicTTS, Kathbath, IndicVoices)")
    p.add_argument("--sha256", action="append", default=[], metavar="FILE=HEX",
                   help="pin another release's checksum for FILE (repeatable)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a source option (repeatable; YAML values), e.g. --option split=test")
    p.add_argument("--exclude-license", action="append", metavar="PATTERN",
                   help="leave out recordings whose license matches (glob, repeatable), e.g. 'CC-BY-NC*'; reported as rejects")
    p.add_argument("--s3-endpoint-url", help="S3-compatible endpoint (MinIO, Ceph); credentials come from the AWS chain")
    p.add_argument("--unit-size", type=int, help="recordings per work unit")
    p.add_argument("--lid", metavar="DIR",
                   help="audio language ID of samples without a transcript (podcasts): a local transformers "
                        "audio-classification model folder (e.g. an MMS-LID copy); samples it does not call Telugu "
                        "are rejected (wrong_language)")
    p.add_argument("--allow-empty", action="store_true",
                   help="commit even when the sources give no recordings or no samples (otherwise that is an error)")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="a filter threshold (repeatable; null unsets), e.g. --filter min_dnsmos_ovrl=3.0, "
                        "--filter min_bandwidth_hz=6000, --filter min_lufs=-45")
    p.add_argument("--dnsmos", action="store_true",
                   help="score every sample with DNSMOS P.835 (SIG/BAK/OVRL; costly on CPU, see README)")
    p.add_argument("--normalize-lufs", type=float, metavar="LUFS",
                   help="loudness-normalise the written segments to this integrated loudness, e.g. -23")
    p.add_argument("--dry-run-filters", nargs="?", const="", default=None, metavar="RUN",
                   help="ingest nothing: show what the filters (--config, --filter) would remove from the samples "
                        "of the finished run RUN (default: --out), from its stored scores")
    p.add_argument("--json", action="store_true", help="with --dry-run-filters: print the preview as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
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
    if args.allow_empty:
        cfg.allow_empty = True
    if args.lid:
        cfg.filters.lid.audio_model = str(Path(args.lid).expanduser().resolve())
    apply_filter_flags(cfg, args.filter)
    if args.dnsmos:
        cfg.measures.dnsmos = True
    if args.normalize_lufs is not None:
        cfg.measures.normalize_lufs = args.normalize_lufs
    if args.dry_run_filters is not None:
        return dry_run(cfg, args.dry_run_filters or cfg.out, args.json)
    if args.exclude_license:
        cfg.exclude_licenses = list(args.exclude_license)
    source_opts = parse_source_flags(args)
    if source_opts and len(cfg.sources) != 1:
        raise ValueError("--mirror/--archive/--sha256/--option apply to one source: name exactly one --source")
    for spec in cfg.sources:
        spec.options.update(source_opts)
        if spec.name == "synthetic":
            if args.texts:
                spec.options["texts"] = str(Path(args.texts).resolve())
            if args.dialogs:
                spec.options["n_dialogs"] = args.dialogs
            if args.voices:
                spec.options["voices"] = [_absolute_mms(v) for v in args.voices]
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
    print(f"\nOutput: {res.out} ({'committed' if res.committed else 'NOT committed'})")
    if not res.committed:
        print("\nThe run did NOT commit (see messages above); rerun the same command to retry.", file=sys.stderr)
        return 1
    return 0


def apply_filter_flags(cfg, items: list[str]) -> None:
    """--filter KEY=VALUE onto ``cfg.filters`` (a number, or null to turn a filter off)."""
    import dataclasses

    import yaml

    known = {f.name for f in dataclasses.fields(cfg.filters)}
    for item in items or []:
        key, sep, val = item.partition("=")
        if not sep or key not in known:
            raise ValueError(f"--filter {item!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(known))}")
        v = yaml.safe_load(val)
        optional = getattr(type(cfg.filters)(), key) is None  # the filters that are off by default can be turned off
        if (v is None and not optional) or (v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))):
            raise ValueError(f"--filter {item!r}: the value must be a number" + (", or null to turn the filter off"
                                                                                  if optional else ""))
        setattr(cfg.filters, key, None if v is None else float(v))


def dry_run(cfg, run: str, as_json: bool) -> int:
    import json

    from pipelines.dryrun import preview, render

    d = preview(run, cfg)
    if as_json:
        print(json.dumps(d.to_dict(), ensure_ascii=False, indent=2))
    else:
        render(d)
    return 0


def _absolute_mms(spec: str) -> str:
    """An ``mms:DIR`` voice spec with DIR made absolute (Ray workers may run elsewhere)."""
    head, sep, folder = spec.partition("mms:")
    if sep and not head.replace("*", "").strip("0123456789 ") and folder:
        return f"{head}mms:{Path(folder).expanduser().resolve()}"
    return spec


def parse_source_flags(args) -> dict:
    """--mirror/--archive/--sha256/--option as recipe options."""
    import yaml

    opts: dict = {}
    if getattr(args, "mirror", None):
        opts["mirror"] = args.mirror
    if getattr(args, "archive", None):
        a = args.archive
        opts["archive"] = a if "://" in a else str(Path(a).expanduser().resolve())
    pins = {}
    for item in getattr(args, "sha256", []) or []:
        name, sep, hexd = item.partition("=")
        if not sep or len(hexd) != 64:
            raise ValueError(f"--sha256 {item!r}: expected FILE=<64 hex digits>")
        pins[name] = hexd.lower()
    if pins:
        opts["sha256"] = pins
    for item in getattr(args, "option", []) or []:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--option {item!r}: expected KEY=VALUE")
        opts[key] = yaml.safe_load(val)
    return opts
