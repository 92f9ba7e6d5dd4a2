"""``matalu manifests report URI -o report.html``: the web page's overview as one static HTML file.

Plots are inline SVG drawn here in Python (no JavaScript, nothing loaded from the network): hours by source,
kind, licence and speaker; duration and SNR histograms; codebook usage of token shards when there are any.
Tables: totals, hours per licence × source, shards (size, samples, sha256), rejects by reason with examples, and
a preview of the first samples. The same input gives the same bytes (no timestamps).
"""

from __future__ import annotations

import html
from pathlib import Path

import storage
from manifests.licenses import license_report
from manifests.overview import TOP_SPEAKERS, ManifestDB, SampleQuery

BAR = "#2f6fba"


def _e(x) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _num(x, d: int = 2) -> str:
    return "" if x is None else f"{x:.{d}f}"


def _fmt_h(h: float) -> str:
    return f"{h:.1f}" if h >= 10 else f"{h:.2f}" if h >= 0.1 else f"{h:.4f}"


def svg_bars(rows: list[dict], key: str, svg_id: str, value: str = "hours",
             label=lambda r: f"{_fmt_h(r['hours'])} h · {r['samples']}") -> str:
    """Horizontal bar chart: one bar per row, labelled with ``row[key]``."""
    W, row_h, label_w, val_w = 560, 22, 170, 130
    n = max(len(rows), 1)
    H = n * row_h + 6
    out = [f'<svg id="{_e(svg_id)}" class="bars" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" '
           f'width="{W}" height="{H}" role="img" data-n="{len(rows)}">']
    if not rows:
        out.append('<text x="4" y="16">no data</text>')
    vmax = max([float(r[value] or 0) for r in rows] + [1e-12])
    for i, r in enumerate(rows):
        y = i * row_h + 3
        lab = str(r[key]) if r[key] not in ("", None) else "(empty)"
        short = lab if len(lab) <= 26 else lab[:25] + "…"
        w = max(1.0, (W - label_w - val_w) * float(r[value] or 0) / vmax)
        out.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{_e(short)}</text>')
        out.append(f'<rect class="bar" x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row_h - 6}" fill="{BAR}">'
                   f'<title>{_e(lab)}: {_e(label(r))}</title></rect>')
        out.append(f'<text x="{label_w + w + 5:.1f}" y="{y + 14}">{_e(label(r))}</text>')
    out.append("</svg>")
    return "".join(out)


def svg_hist(h: dict, svg_id: str, unit: str) -> str:
    """Vertical histogram with y ticks (counts) and x ticks (bin edges)."""
    W, H, L, R, T, B = 560, 220, 46, 10, 10, 34
    out = [f'<svg id="{_e(svg_id)}" class="hist" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" '
           f'height="{H}" role="img" data-bins="{len(h["counts"])}">',
           f'<rect x="0" y="0" width="{W}" height="{H}" fill="#fff"/>',
           f'<path d="M{L} {T} L{L} {H - B} L{W - R} {H - B}" stroke="#aab3bc" fill="none"/>']
    counts, edges = h["counts"], h["edges"]
    if not counts:
        out.append(f'<text x="{L + 10}" y="{T + 20}">no values</text></svg>')
        return "".join(out)
    cmax = max(max(counts), 1)
    bw = (W - L - R) / len(counts)
    for i, c in enumerate(counts):
        bh = (H - T - B) * c / cmax
        out.append(f'<rect class="bin" x="{L + i * bw + 1:.1f}" y="{H - B - bh:.1f}" width="{max(1.0, bw - 2):.1f}" '
                   f'height="{bh:.1f}" fill="{BAR}"><title>{edges[i]:.2f}–{edges[i + 1]:.2f}: {c}</title></rect>')
    for k in range(5):
        v = round(cmax * k / 4)
        y = H - B - (H - T - B) * k / 4
        out.append(f'<text x="{L - 5}" y="{y + 4:.1f}" text-anchor="end">{v}</text>')
    lo, hi = edges[0], edges[-1]
    for k in range(6):
        x = L + (W - L - R) * k / 5
        v = lo + (hi - lo) * k / 5
        out.append(f'<text x="{x:.1f}" y="{H - B + 14}" text-anchor="middle">{v:.{1 if abs(hi - lo) < 10 else 0}f}</text>')
    out.append(f'<text x="{L + (W - L - R) / 2:.1f}" y="{H - 4}" text-anchor="middle">{_e(unit)}</text></svg>')
    return "".join(out)


def _table(tid: str, head: list[str], rows: list[list[str]], num: set[int] = frozenset()) -> str:
    th = "".join(f'<th class="{"num" if i in num else ""}">{_e(h)}</th>' for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td class="{"num" if i in num else ""}">{c}</td>' for i, c in enumerate(r)) + "</tr>"
                   for r in rows)
    return f'<table id="{tid}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


CSS = """
body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", "Noto Sans Telugu", "Noto Sans", sans-serif; color:#1d2329; background:#f6f7f9; }
header { padding:16px 24px 8px; background:#fff; border-bottom:1px solid #dde2e7; }
h1 { font-size:20px; margin:0 0 4px; } h2 { font-size:16px; margin:0 0 10px; } h3 { font-size:14px; margin:8px 0 6px; }
.uri { color:#66707a; font-family:ui-monospace, monospace; font-size:12px; word-break:break-all; }
main { padding:12px 24px 40px; }
section { background:#fff; border:1px solid #dde2e7; border-radius:8px; padding:14px 16px; margin:0 0 14px; }
.cards { display:flex; flex-wrap:wrap; gap:10px; margin-top:10px; }
.card { border:1px solid #dde2e7; border-radius:6px; padding:6px 12px; min-width:110px; }
.card b { display:block; font-size:18px; } .card span { color:#66707a; font-size:12px; }
.grid { display:grid; grid-template-columns:repeat(auto-fit, minmax(420px, 1fr)); gap:14px; }
figure { margin:0; } figcaption { font-weight:600; margin-bottom:4px; }
svg { max-width:100%; height:auto; } svg text { font-size:11px; fill:#1d2329; font-family:system-ui, sans-serif; }
table { border-collapse:collapse; width:100%; font-size:12.5px; }
th, td { border-bottom:1px solid #dde2e7; padding:4px 6px; text-align:left; vertical-align:top; }
th { background:#fafbfc; } td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
.mono { font-family:ui-monospace, monospace; font-size:11.5px; } .note, .ex { color:#66707a; font-size:12px; }
"""


def build_report(uri: str, *, preview: int = 100, max_shards: int = 2000, db: ManifestDB | None = None) -> str:
    own = db is None
    db = db or ManifestDB(uri, materialize="never")
    try:
        return _build(db, uri, preview, max_shards)
    finally:
        if own:
            db.close()


def _build(db: ManifestDB, uri: str, preview: int, max_shards: int) -> str:
    s = db.summary()
    lic = license_report(uri, db=db)
    hd = db.histogram("duration_s", 30)
    hs = db.histogram("snr_db", 30)
    shards = db.shard_rows(limit=max_shards)
    rejects = db.reject_summary()
    tokens = db.tokens()
    samples = db.samples(SampleQuery(limit=max(1, min(preview, 500))))
    parts: list[str] = []
    a = parts.append
    a('<!doctype html><html lang="en"><head><meta charset="utf-8">')
    a('<meta name="viewport" content="width=device-width, initial-scale=1">')
    a(f"<title>matalu report · {_e(uri)}</title><style>{CSS}</style></head><body>")
    a(f'<header><h1>matalu · manifests report</h1><div class="uri">{_e(uri)}</div><div class="cards" id="totals">')
    for k, v in (("samples", s["n_samples"]), ("hours", _fmt_h(s["hours"])), ("sources", s["n_sources"]),
                 ("speakers", s["n_speakers"]), ("shards", s["n_shards"]), ("shard MB", f"{s['shard_bytes'] / 1e6:.2f}"),
                 ("recordings", s["n_recordings"]), ("rejects", s["n_rejects"])):
        a(f'<div class="card"><b>{_e(v)}</b><span>{_e(k)}</span></div>')
    a("</div>")
    if s["runs"]:
        r = s["runs"][-1]
        a(f'<div class="note">last run {_e(r["run_id"])}: {_e(r["command"])} ({_e(r["started"])} → {_e(r["ended"])}); '
          f'{len(s["runs"])} run(s) in this output</div>')
    a("</header><main>")

    a('<section id="hours-sec"><h2>Hours</h2><div class="grid">')
    for key, title in (("source", "by source"), ("kind", "by kind"), ("license", "by license"),
                       ("speaker", f"by speaker (top {TOP_SPEAKERS}; a dialog counts for each of its speakers)")):
        a(f"<figure><figcaption>{_e(title)}</figcaption>{svg_bars(s['by_' + key], key, 'chart-' + key)}</figure>")
    a("</div></section>")

    a('<section id="dist-sec"><h2>Distributions</h2><div class="grid">')
    for h, sid, title, unit in ((hd, "hist-duration", "duration (s)", "seconds"), (hs, "hist-snr", "SNR (dB)", "dB")):
        note = (f"{h['n']} samples · mean {_num(h['mean'])} · median {_num(h['median'])}"
                + (f" · {h['missing']} without a value" if h["missing"] else "")) if h["n"] else "no values"
        a(f'<figure><figcaption>{_e(title)}</figcaption>{svg_hist(h, sid, unit)}<div class="note">{_e(note)}</div></figure>')
    a("</div></section>")

    a('<section id="licenses-sec"><h2>Licenses</h2>')
    rows = [[_e(d["license"]), str(d["samples"]), _fmt_h(d["hours"]), f"{100 * d['share']:.1f}%",
             "" if d.get("input_hours") is None else _fmt_h(d["input_hours"]), _e(", ".join(d["sources"]))]
            for d in lic["by_license"]]
    rows.append(["<b>total</b>", str(lic["total"]["samples"]), _fmt_h(lic["total"]["hours"]), "100.0%", "", ""])
    a(_table("licenses-table", ["license", "samples", "hours", "share", "input recording h", "sources"], rows, {1, 2, 3, 4}))
    a("<h3>by license and source</h3>")
    a(_table("license-source-table", ["license", "source", "samples", "hours"],
             [[_e(r["license"]), _e(r["source"]), str(r["samples"]), _fmt_h(r["hours"])] for r in lic["by_license_source"]],
             {2, 3}))
    a("</section>")

    a('<section id="samples-sec"><h2>Samples</h2>')
    a(f'<div class="note">first {len(samples["rows"])} of {samples["total"]} samples in manifest order '
      f'(browse and listen with <span class="mono">matalu manifests serve</span>)</div>')
    a(_table("samples-table", ["sample", "kind", "source", "speakers", "dur s", "SNR dB", "license", "text"],
             [[f'<span class="mono">{_e(r["sample_id"])}</span>', _e(r["kind"]), _e(r["source"]),
               _e(", ".join(r["speakers"] or [])), _num(r["duration_s"]), _num(r["snr_db"], 1), _e(r["license"]),
               _e((r["text"] or "") + (" …" if (r["text_len"] or 0) > len(r["text"] or "") else ""))]
              for r in samples["rows"]], {4, 5}))
    a("</section>")

    a('<section id="shards-sec"><h2>Shards</h2>')
    a(f'<div class="note">{shards["total"]} shards'
      + (f" (first {len(shards['rows'])} listed)" if shards["total"] > len(shards["rows"]) else "") + "</div>")
    a(_table("shards-table", ["shard", "kind", "samples kind", "samples", "seconds", "MB", "sha256"],
             [[f'<span class="mono">{_e(r["uri"])}</span>', _e(r["kind"] + (f" · {r['codec_id']}" if r["codec_id"] else "")),
               _e(r["sample_kind"]), str(r["n_samples"]), _num(r["seconds"], 1), f"{(r['bytes'] or 0) / 1e6:.2f}",
               f'<span class="mono">{_e(r["sha256"])}</span>'] for r in shards["rows"]], {3, 4, 5}))
    a("</section>")

    a(f'<section id="rejects-sec"><h2>Rejects</h2><div class="note">{s["n_rejects"] or "no"} rejected items</div>')
    if rejects:
        a(_table("rejects-table", ["stage", "reason", "count", "seconds", "examples"],
                 [[_e(g["stage"]), f'<span class="mono">{_e(g["reason"])}</span>', str(g["count"]), _num(g["seconds"], 1),
                   "".join(f'<div class="ex"><span class="mono">{_e(e["item"])}</span> — {_e(e["detail"])}</div>'
                           for e in g["examples"])] for g in rejects], {2, 3}))
    a("</section>")

    a('<section id="tokens-sec"><h2>Token shards</h2>')
    if not tokens["available"]:
        a('<div class="note" id="tokens">no token shards in this output (run matalu encode)</div>')
    else:
        a('<div id="tokens">')
        for i, c in enumerate(tokens["codecs"]):
            facts = (("shards", c.get("shards")), ("samples", c.get("samples")),
                     ("hours", None if c.get("seconds") is None else _fmt_h(c["seconds"] / 3600)),
                     ("frames", f"{c.get('frames')}" + ("" if c.get("frames_exact", True) else " (scanned)")),
                     ("codebooks", c.get("n_codebooks")),
                     ("codebook size", f"{c.get('codebook_size', '')}" + ("" if c.get("codebook_size_known") else " (max seen)")),
                     ("MB", None if c.get("bytes") is None else f"{c['bytes'] / 1e6:.2f}"))
            a(f'<h3>{_e(c["codec_id"] or "(no codec id)")}</h3><div class="cards">')
            for k, v in facts:
                a(f'<div class="card"><b>{_e("" if v is None else v)}</b><span>{_e(k)}</span></div>')
            a(f'</div><div class="note">codebook usage over {c.get("scanned_samples", 0)} samples '
              f'({c.get("scanned_frames", 0)} frames)</div>')
            usage = [{"codebook": f"codebook {u['codebook']}", "usage": u["usage"], "u": u} for u in c.get("usage", [])]
            a(svg_bars(usage, "codebook", f"tokens-usage-{i}", value="usage",
                       label=lambda r: f"{100 * r['usage']:.1f}% · {r['u']['distinct']}/{r['u']['size']} used, "
                                       f"ppl {r['u']['perplexity']:.0f}"))
        a("</div>")
    a("</section></main></body></html>\n")
    return "".join(parts)


def write_report(uri: str, out: str | Path, **kw) -> str:
    """Write the report to ``out`` (a local path or ``s3://`` URI); returns ``out``."""
    text = build_report(uri, **kw)
    out = str(out)
    if storage.is_local(out):
        Path(storage.local_path(out)).parent.mkdir(parents=True, exist_ok=True)
    storage.write_text(out, text)
    if storage.is_local(out):  # atomic writes create 0600 temp files; a report is for reading
        import os

        mask = os.umask(0)
        os.umask(mask)
        os.chmod(storage.local_path(out), 0o666 & ~mask)
    return out
