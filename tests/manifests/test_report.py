"""`matalu manifests report`: one static HTML file, plots as inline SVG, no scripts, nothing from the network."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from manifests_web_helpers import CODEC, enriched_copy

from manifests.io import manifest_uri, read_table
from manifests.report import build_report, svg_bars, svg_hist, write_report
from manifests.rows import Sample, Shard


class _Doc(HTMLParser):
    """Collects tags, ids, external references and table rows of a document; checks tags are balanced."""

    VOID = {"meta", "br", "img", "input", "link", "hr", "path", "rect", "line", "source"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.ids: dict[str, str] = {}
        self.tags: list[tuple[str, dict]] = []
        self.errors: list[str] = []
        self.table_rows: dict[str, int] = {}
        self._table: list[str] = []
        self._in_tbody = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if "id" in a:
            self.ids[a["id"]] = tag
        if tag == "table":
            self._table.append(a.get("id", ""))
        if tag == "tbody":
            self._in_tbody = True
        if tag == "tr" and self._in_tbody and self._table:
            self.table_rows[self._table[-1]] = self.table_rows.get(self._table[-1], 0) + 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unbalanced </{tag}> (open: {self.stack[-3:]})")
            return
        self.stack.pop()
        if tag == "tbody":
            self._in_tbody = False
        if tag == "table":
            self._table.pop()


@pytest.fixture(scope="module")
def run(ingested, tmp_path_factory):
    cfg, _ = ingested
    return enriched_copy(cfg.out, tmp_path_factory.mktemp("report") / "run")


def test_report_is_one_static_file_with_inline_svg(run, tmp_path):
    out = run["out"]
    path = tmp_path / "sub" / "report.html"
    assert write_report(out, str(path)) == str(path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!doctype html>") and len(text) > 10_000
    assert build_report(out) == text  # the same input gives the same bytes
    doc = _Doc()
    doc.feed(text)
    doc.close()
    assert not doc.errors and doc.stack == [], doc.errors[:5]
    # no JavaScript, no external resources
    assert not any(t == "script" for t, _ in doc.tags)
    assert not any(k.startswith("on") for _, a in doc.tags for k in a)
    refs = [v for _, a in doc.tags for k, v in a.items() if k in ("src", "href")]
    assert refs == []
    assert "url(" not in text and "@import" not in text

    samples = read_table(manifest_uri(out, "samples"), Sample).to_pylist()
    shards = read_table(manifest_uri(out, "shards"), Shard).to_pylist()
    # plots: inline SVG with ids and one bar per group / one rect per histogram bin
    for sid, n in (("chart-source", 1), ("chart-kind", 2), ("chart-license", 4), ("chart-speaker", 2)):
        assert doc.ids.get(sid) == "svg", sid
        body = re.search(rf'<svg id="{sid}".*?</svg>', text, re.DOTALL).group(0)
        assert body.count('class="bar"') == n, sid
    for sid in ("hist-duration", "hist-snr"):
        body = re.search(rf'<svg id="{sid}".*?</svg>', text, re.DOTALL).group(0)
        counts = [int(c) for c in re.findall(r"<title>[^<]*?: (\d+)</title>", body)]
        assert len(counts) == 30 and sum(counts) == len(samples), sid
    assert doc.ids.get("tokens-usage-0") == "svg" and CODEC in text
    usage = re.search(r'<svg id="tokens-usage-0".*?</svg>', text, re.DOTALL).group(0)
    assert usage.count('class="bar"') == 4 and "25.0%" in usage and "100.0%" in usage
    # tables
    assert doc.table_rows["shards-table"] == len(shards)
    assert doc.table_rows["rejects-table"] == 2 and "too_short" in text and "syn-x-000" in text
    assert doc.table_rows["samples-table"] == len(samples)
    assert doc.table_rows["licenses-table"] == 4 + 1  # four licences and the total row
    for s in shards:
        assert s["sha256"] in text
    assert f"<b>{len(samples)}</b><span>samples</span>" in text


def test_report_escapes_and_handles_empty(tmp_path):
    svg = svg_bars([{"k": "<script>x</script>", "hours": 1.0, "samples": 2}], "k", "c1")
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "no data" in svg_bars([], "k", "c2")
    assert "no values" in svg_hist({"counts": [], "edges": []}, "h", "s")


def test_report_preview_limit_and_cli(run, tmp_path):
    text = build_report(run["out"], preview=5)
    doc = _Doc()
    doc.feed(text)
    assert doc.table_rows["samples-table"] == 5 and "first 5 of 36 samples" in text
