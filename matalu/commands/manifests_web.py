"""`matalu manifests serve | report | licenses | export`: added to the `manifests` subcommand's parsers.

``matalu/commands/manifests.py`` calls :func:`add_subcommands` with its sub-parsers object and, in ``run``,
``manifests_web.run(args)`` first: it returns ``None`` when ``args.mcmd`` is not one of these.
"""

from __future__ import annotations

import json
import sys

SUBCOMMANDS = ("serve", "report", "licenses", "export")


def add_subcommands(ms) -> None:
    a = ms.add_parser("serve", help="local web page: hours, histograms, shards, rejects, samples with audio playback")
    a.add_argument("uri", help="run output (dir or s3://), its manifests/ dir, or a samples.parquet")
    a.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    a.add_argument("--port", type=int, default=8765, help="port (0 picks a free one; default 8765)")
    a.add_argument("--verbose", action="store_true", help="log each request")
    a.add_argument("--allow-outside-root", action="store_true",
                   help="also serve shards the manifests place outside the dataset's directory (default: refused)")
    a = ms.add_parser("report", help="the same overview as one static HTML file (inline SVG plots, no JS)")
    a.add_argument("uri")
    a.add_argument("-o", "--output", default="report.html", help="HTML file to write (local path or s3://)")
    a.add_argument("--preview", type=int, default=100, help="samples listed in the report (default 100)")
    a = ms.add_parser("licenses", help="hours per license and source")
    a.add_argument("uri")
    a.add_argument("--json", action="store_true")
    a = ms.add_parser("export", help="export samples: Hugging Face dataset, Lhotse manifests, or moshi-finetune")
    a.add_argument("uri")
    a.add_argument("-o", "--out", required=True, help="output directory (local)")
    a.add_argument("--format", dest="fmt", choices=["hf", "lhotse", "moshi"], required=True,
                   help="hf: datasets save_to_disk; lhotse: WAVs + recordings/supervisions/cuts jsonl.gz; "
                        "moshi: moshi-finetune stereo WAVs + data.jsonl (dialogs only, no filters)")
    a.add_argument("--kind", choices=["mono", "dialog"])
    a.add_argument("--split", help="only this split (e.g. train)")
    a.add_argument("--source", help="only this source")
    a.add_argument("--exclude-license", action="append", default=[], metavar="PATTERN",
                   help="drop samples whose license matches (glob, case-insensitive; 'none' = no license; repeatable)")
    a.add_argument("--limit", type=int, help="at most N samples (manifest order)")


def run(args) -> int | None:
    cmd = getattr(args, "mcmd", None)
    if cmd not in SUBCOMMANDS:
        return None
    if cmd == "serve":
        from manifests.web import serve

        serve(args.uri, host=args.host, port=args.port, verbose=args.verbose,
              allow_outside_root=args.allow_outside_root)
        return 0
    if cmd == "report":
        from manifests.report import write_report

        out = write_report(args.uri, args.output, preview=args.preview)
        print(f"wrote {out}", file=sys.stderr)
        return 0
    if cmd == "licenses":
        from manifests.licenses import license_report, render

        rep = license_report(args.uri)
        if args.json:
            print(json.dumps(rep, ensure_ascii=False, indent=2))
        else:
            render(rep)
        return 0
    if cmd == "export":
        from manifests.export import export

        res = export(args.uri, args.out, args.fmt, kind=args.kind, split=args.split, source=args.source,
                     exclude_licenses=args.exclude_license, limit=args.limit)
        print(json.dumps(res.to_dict(), ensure_ascii=False, indent=2))
        return 0
    return None
