"""`matalu sources list | download`: the corpus recipes (``pipelines.sources``), listed or fetched one at a time."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("sources", help="the corpus recipes")
    ss = p.add_subparsers(dest="scmd", required=True)
    ss.add_parser("list", help="name, hours, license, access, sample kind")
    d = ss.add_parser("download", help="download (or synthesize), verify and extract a source; prints where")
    d.add_argument("name")
    d.add_argument("--to", required=True, help="local (or shared) directory to download into")
    d.add_argument("--mirror", help="base URL serving the source's published files")
    d.add_argument("--archive", help="an archive you already have: local path or URL")
    d.add_argument("--sha256", action="append", default=[], metavar="FILE=HEX", help="pin another release's checksum")
    d.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a source option (repeatable)")
    d.add_argument("--prepare", action="store_true", help="also prepare, and print recording/reject counts")


def run(args) -> int:
    if args.scmd == "download":
        return _download(args)
    from rich.console import Console
    from rich.table import Table

    from pipelines import sources

    t = Table(title="sources")
    for c in ("name", "hours", "license", "access", "kind", "description"):
        t.add_column(c)
    for n in sources.names():
        info = sources.get(n).INFO
        t.add_row(*[str(info.get(c, "")) for c in ("name", "hours", "license", "access", "kind", "description")])
    Console(width=max(Console().width, 140)).print(t)
    return 0


def _download(args) -> int:
    from manifests.rows import Reject
    from matalu.commands.ingest import parse_source_flags
    from pipelines import sources

    if "://" in args.to:
        raise ValueError("--to must be a local or shared directory: recipes extract archives there")
    mod = sources.get(args.name)
    opts = parse_source_flags(args)
    target = Path(args.to) / args.name if Path(args.to).name != args.name else Path(args.to)
    path = mod.download(target, **opts)
    print(f"{args.name}: ready at {path}")
    if args.prepare:
        n = r = 0
        for row in mod.prepare(path, **opts):
            if isinstance(row, Reject):
                r += 1
            else:
                n += 1
        print(f"{args.name}: {n} recordings, {r} rejected while preparing")
    return 0
