"""``matalu manifests serve URI``: a small local web page over a run's manifests (stdlib HTTP server, no framework).

One page (HTML, CSS and JS inline: it loads nothing from the network) and JSON endpoints:

==============================  =================================================================================
``GET /``                        the page
``GET /api/summary``             totals; hours by source, kind, license, speaker (top 30); runs
``GET /api/hist?field=&bins=``   histogram of ``duration_s`` | ``snr_db`` | ``speech_ratio`` | ``clipping`` |
                                 ``dnsmos_ovrl`` | ``dnsmos_sig`` | ``dnsmos_bak`` | ``bandwidth_hz`` | ``loudness_lufs``
``GET /api/shards``              shards with size, sample count, seconds, sha256 (``limit``, ``offset``, ``kind``)
``GET /api/rejects``             rejects grouped by stage and reason (count, hours, share of the input hours: what
                                 each filter removed), with up to 3 examples each
``GET /api/filters``             values for the sample filters (sources, kinds, licenses, splits, top speakers)
``GET /api/samples``             a page of samples: ``source kind speaker license split recording_id q sort limit
                                 offset``; returns ``{total, limit, offset, rows}`` (DuckDB ``LIMIT/OFFSET``)
``GET /api/sample/<id>``         one sample's full row (turns included)
``GET /api/audio/<id>.wav``      the sample's FLAC from its shard as 16-bit WAV (dialog: 2 channels = stereo,
                                 left ch0 system, right ch1 user); honours ``Range`` so the player can seek
``GET /api/tokens``              token shards per codec: shards, samples, frames, codebook usage (or
                                 ``{"available": false}``)
==============================  =================================================================================

The server binds 127.0.0.1 unless told otherwise; it only reads.
"""

from __future__ import annotations

import errno
import json
import re
import signal
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from manifests.overview import MAX_INT, ManifestDB, SampleQuery

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _int_param(params: dict, name: str, default: int, lo: int = -MAX_INT, hi: int = MAX_INT) -> int:
    """An integer query parameter; a value that is not one, or out of [lo, hi], is a 400 with this sentence."""
    raw = (params.get(name) or [str(default)])[0].strip()
    try:
        v = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw[:40]!r}") from None
    if not lo <= v <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}")
    return v


class _Handler(BaseHTTPRequestHandler):
    server_version = "matalu-manifests/1"
    protocol_version = "HTTP/1.1"

    @property
    def app(self) -> ManifestServer:
        return self.server.app  # type: ignore[attr-defined]

    def log_message(self, fmt: str, *args) -> None:
        if self.app.verbose:
            sys.stderr.write("[serve] %s %s\n" % (self.address_string(), fmt % args))

    # -- responses ----------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, obj, status: int = 200, head: bool = False) -> None:
        body = json.dumps(obj, ensure_ascii=False, default=str).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8", head=head)

    def _error(self, status: int, msg: str, head: bool = False) -> None:
        self._json({"error": msg}, status=status, head=head)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def _dispatch(self, head: bool) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        params = parse_qs(parts.query, keep_blank_values=True)
        db = self.app.db
        try:
            if path in ("/", "/index.html"):
                self._send(200, self.app.page, "text/html; charset=utf-8", head=head)
            elif path == "/favicon.ico":
                self._send(204, b"", "image/x-icon", head=head)
            elif path == "/api/summary":
                self._json(db.summary(), head=head)
            elif path == "/api/hist":
                field = (params.get("field") or ["duration_s"])[0]
                bins = _int_param(params, "bins", 30, 1, 200)
                self._json(db.histogram(field, bins), head=head)
            elif path == "/api/shards":
                lim = max(1, min(10000, _int_param(params, "limit", 1000)))
                off = _int_param(params, "offset", 0, 0)
                self._json(db.shard_rows(lim, off, (params.get("kind") or [""])[0]), head=head)
            elif path == "/api/rejects":
                self._json({"total": db.totals()["n_rejects"], "groups": db.reject_summary()}, head=head)
            elif path == "/api/filters":
                self._json(db.filter_options(), head=head)
            elif path == "/api/samples":
                self._json(db.samples(SampleQuery.from_params(params)), head=head)
            elif path.startswith("/api/sample/"):
                sid = unquote(path[len("/api/sample/"):])
                row = db.sample(sid)
                if row is None:
                    self._error(404, f"no sample {sid!r}", head=head)
                else:
                    self._json(row, head=head)
            elif path.startswith("/api/audio/"):
                sid = unquote(path[len("/api/audio/"):])
                sid = sid.removesuffix(".wav")
                self._audio(sid, head)
            elif path == "/api/tokens":
                self._json(db.tokens(), head=head)
            else:
                self._error(404, f"no such page: {path}", head=head)
        except (KeyError, FileNotFoundError) as e:
            self._error(404, str(e.args[0] if e.args else e), head=head)
        except ValueError as e:
            self._error(400, str(e), head=head)
        except PermissionError as e:  # a shard outside the dataset root (serve --allow-outside-root follows it)
            self._error(403, str(e), head=head)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # noqa: BLE001 - a page must not take the server down
            if self.app.verbose:
                traceback.print_exc()
            self._error(500, f"{type(e).__name__}: {e}", head=head)

    def _audio(self, sid: str, head: bool) -> None:
        wav, _ = self.app.db.wav_bytes(sid)
        n = len(wav)
        rng = self.headers.get("Range")
        fname = re.sub(r"[^A-Za-z0-9_.-]", "_", sid)[:120] or "sample"
        base = {"Accept-Ranges": "bytes", "Content-Disposition": f'inline; filename="{fname}.wav"'}
        m = _RANGE_RE.match(rng.strip()) if rng else None
        if m and (m.group(1) or m.group(2)):
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), n - 1) if m.group(2) else n - 1
            else:  # suffix range: the last N bytes
                start = max(0, n - int(m.group(2)))
                end = n - 1
            if start >= n or start > end:
                self._send(416, b"", "audio/wav", {"Content-Range": f"bytes */{n}"}, head=head)
                return
            self._send(206, wav[start:end + 1], "audio/wav", {**base, "Content-Range": f"bytes {start}-{end}/{n}"},
                       head=head)
            return
        self._send(200, wav, "audio/wav", base, head=head)


class ManifestServer:
    """The page and API over one run. ``port=0`` picks a free port (see :attr:`url`)."""

    def __init__(self, uri: str, host: str = "127.0.0.1", port: int = 8765, *, verbose: bool = False,
                 db: ManifestDB | None = None, allow_outside_root: bool = False) -> None:
        self.db = db or ManifestDB(uri)
        self.db.allow_outside_root = allow_outside_root
        self.verbose = verbose
        self.page = PAGE.encode("utf-8")
        try:
            self.httpd = ThreadingHTTPServer((host, port), _Handler)
        except OSError as e:
            if db is None:
                self.db.close()  # its temporary DuckDB files go with it
            raise ValueError(_bind_error(e, host, port)) from None
        self.httpd.daemon_threads = True
        self.httpd.app = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return self.httpd.server_address[0]

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        host = self.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}/"

    def start(self) -> ManifestServer:
        """Serve in a background thread (tests, notebooks)."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="matalu-serve", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def close(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self.httpd.server_close()
        self.db.close()

    def __enter__(self) -> ManifestServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _bind_error(e: OSError, host: str, port: int) -> str:
    if e.errno == errno.EADDRINUSE:
        return (f"port {port} on {host} is already in use (another server?): pick another with --port N, "
                "or --port 0 for a free one")
    if e.errno == errno.EACCES:
        return f"port {port} needs privileges to bind: pick one above 1023 with --port N"
    return f"cannot listen on {host}:{port} ({e.strerror or e}): check --host and --port"


class _Stop(Exception):
    """Raised in the main thread by SIGTERM/SIGHUP so serving stops the way Ctrl-C does."""


def serve(uri: str, host: str = "127.0.0.1", port: int = 8765, *, verbose: bool = False,
          allow_outside_root: bool = False) -> None:
    """Serve until Ctrl-C, SIGTERM or SIGHUP; each one removes the temporary DuckDB files."""
    srv = ManifestServer(uri, host, port, verbose=verbose, allow_outside_root=allow_outside_root)
    old: dict[int, object] = {}

    def stop(signum, frame) -> None:
        raise _Stop(signum)

    try:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
                if sig is not None:
                    old[sig] = signal.signal(sig, stop)
        t = srv.db.totals()
        print(f"matalu manifests: {t['n_samples']} samples, {t['hours']:.3f} h from {uri}")
        print(f"serving on {srv.url}  (Ctrl-C stops)", flush=True)
        srv.serve_forever()
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        srv.close()
        for sig, handler in old.items():
            signal.signal(sig, handler)


PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>matalu · manifests</title>
<style>
:root { --fg:#1d2329; --muted:#66707a; --line:#dde2e7; --bg:#f6f7f9; --card:#fff; --acc:#2f6fba; --acc2:#d9822b; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", "Noto Sans Telugu", "Noto Sans", sans-serif; color:var(--fg); background:var(--bg); }
header { padding:16px 24px 8px; background:var(--card); border-bottom:1px solid var(--line); }
h1 { font-size:20px; margin:0 0 4px; } h2 { font-size:16px; margin:0 0 10px; } h3 { font-size:14px; margin:0 0 6px; }
#uri { color:var(--muted); font-family:ui-monospace, monospace; font-size:12px; word-break:break-all; }
main { padding:12px 24px 40px; }
section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:14px 16px; margin:0 0 14px; }
.cards { display:flex; flex-wrap:wrap; gap:10px; margin-top:10px; }
.card { border:1px solid var(--line); border-radius:6px; padding:6px 12px; min-width:110px; }
.card b { display:block; font-size:18px; } .card span { color:var(--muted); font-size:12px; }
.grid { display:grid; grid-template-columns:repeat(auto-fit, minmax(420px, 1fr)); gap:14px; }
figure { margin:0; } figcaption { font-weight:600; margin-bottom:4px; }
svg.bars text { font-size:11px; fill:var(--fg); } svg.bars rect.bar { fill:var(--acc); }
canvas.hist { width:100%; height:220px; border:1px solid var(--line); border-radius:4px; background:#fff; }
.note { color:var(--muted); font-size:12px; }
table { border-collapse:collapse; width:100%; font-size:12.5px; }
th, td { border-bottom:1px solid var(--line); padding:4px 6px; text-align:left; vertical-align:top; }
th { background:#fafbfc; position:sticky; top:0; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
td.mono, .mono { font-family:ui-monospace, monospace; font-size:11.5px; }
tr.sample-row { cursor:pointer; } tr.sample-row:hover { background:#eef4fb; } tr.sample-row.sel { background:#dce9f8; }
td.text { max-width:520px; }
form#filters { display:flex; flex-wrap:wrap; gap:8px; align-items:end; margin-bottom:8px; }
form#filters label { display:flex; flex-direction:column; font-size:12px; color:var(--muted); }
input, select, button { font:inherit; padding:3px 6px; }
#pager { display:flex; gap:10px; align-items:center; margin:6px 0; }
#player-panel { border:1px solid var(--line); border-radius:6px; padding:10px; margin:8px 0; background:#fbfcfd; }
#player { width:100%; }
#timeline { width:100%; height:auto; display:block; margin-top:6px; }
#timeline rect.turn { cursor:pointer; } #timeline rect.role-system { fill:var(--acc); } #timeline rect.role-user { fill:var(--acc2); }
#timeline rect.role-other { fill:#7d8a96; } #timeline text { font-size:11px; fill:var(--fg); }
.scroll { max-height:420px; overflow:auto; }
.err { color:#b3261e; }
.ex { color:var(--muted); font-size:11.5px; }
</style>
</head>
<body>
<header>
  <h1>matalu · manifests</h1>
  <div id="uri"></div>
  <div id="totals" class="cards"></div>
</header>
<main>
<section id="hours-sec">
  <h2>Hours</h2>
  <div class="grid">
    <figure><figcaption>by source</figcaption><svg id="chart-source" class="bars" width="100%"></svg></figure>
    <figure><figcaption>by kind</figcaption><svg id="chart-kind" class="bars" width="100%"></svg></figure>
    <figure><figcaption>by license</figcaption><svg id="chart-license" class="bars" width="100%"></svg></figure>
    <figure><figcaption>by speaker (top 30; a dialog counts for each of its speakers)</figcaption><svg id="chart-speaker" class="bars" width="100%"></svg></figure>
  </div>
</section>
<section id="dist-sec">
  <h2>Distributions</h2>
  <div class="grid">
    <figure><figcaption>duration (s)</figcaption><canvas id="hist-duration" class="hist"></canvas><div class="note" id="hist-duration-note"></div></figure>
    <figure><figcaption>SNR (dB)</figcaption><canvas id="hist-snr" class="hist"></canvas><div class="note" id="hist-snr-note"></div></figure>
    <figure><figcaption>DNSMOS P.835 OVRL</figcaption><canvas id="hist-dnsmos_ovrl" class="hist"></canvas><div class="note" id="hist-dnsmos_ovrl-note"></div></figure>
    <figure><figcaption>DNSMOS P.835 SIG</figcaption><canvas id="hist-dnsmos_sig" class="hist"></canvas><div class="note" id="hist-dnsmos_sig-note"></div></figure>
    <figure><figcaption>DNSMOS P.835 BAK</figcaption><canvas id="hist-dnsmos_bak" class="hist"></canvas><div class="note" id="hist-dnsmos_bak-note"></div></figure>
    <figure><figcaption>effective bandwidth (Hz)</figcaption><canvas id="hist-bandwidth" class="hist"></canvas><div class="note" id="hist-bandwidth-note"></div></figure>
    <figure><figcaption>loudness (LUFS, ITU-R BS.1770)</figcaption><canvas id="hist-loudness" class="hist"></canvas><div class="note" id="hist-loudness-note"></div></figure>
  </div>
</section>
<section id="samples-sec">
  <h2>Samples</h2>
  <form id="filters" autocomplete="off">
    <label>source<select id="f-source"><option value="">any</option></select></label>
    <label>kind<select id="f-kind"><option value="">any</option></select></label>
    <label>license<select id="f-license"><option value="">any</option></select></label>
    <label>speaker<input id="f-speaker" list="speakers" size="16" placeholder="any"><datalist id="speakers"></datalist></label>
    <label>text / id<input id="f-q" size="24" placeholder="search"></label>
    <label>sort<select id="f-sort">
      <option value="">manifest order</option><option value="-duration_s">longest</option><option value="duration_s">shortest</option>
      <option value="snr_db">lowest SNR</option><option value="-snr_db">highest SNR</option>
      <option value="dnsmos_ovrl">lowest DNSMOS</option><option value="bandwidth_hz">narrowest band</option>
      <option value="loudness_lufs">quietest</option><option value="sample_id">id</option>
    </select></label>
    <label>per page<select id="f-limit"><option>25</option><option selected>50</option><option>100</option><option>200</option></select></label>
    <button type="submit">filter</button>
  </form>
  <div id="player-panel" hidden>
    <h3 id="player-title"></h3>
    <audio id="player" controls preload="metadata"></audio>
    <div class="note" id="player-note"></div>
    <svg id="timeline" viewBox="0 0 1000 70" preserveAspectRatio="none"></svg>
    <div id="sample-meta" class="ex"></div>
  </div>
  <div id="pager"><button id="prev" type="button">&#8249; prev</button><span id="page-info"></span><button id="next" type="button">next &#8250;</button></div>
  <div class="scroll" style="max-height:640px">
  <table id="samples-table">
    <thead><tr><th></th><th>sample</th><th>kind</th><th>source</th><th>speakers</th><th class="num">dur s</th><th class="num">SNR dB</th><th class="num">OVRL</th><th class="num">BW kHz</th><th class="num">LUFS</th><th>license</th><th>text</th></tr></thead>
    <tbody></tbody>
  </table>
  </div>
</section>
<section id="shards-sec">
  <h2>Shards</h2>
  <div class="note" id="shards-note"></div>
  <div class="scroll">
  <table id="shards-table">
    <thead><tr><th>shard</th><th>kind</th><th>samples kind</th><th class="num">samples</th><th class="num">seconds</th><th class="num">MB</th><th>sha256</th></tr></thead>
    <tbody></tbody>
  </table>
  </div>
</section>
<section id="rejects-sec">
  <h2>Rejects</h2>
  <div class="note" id="rejects-note"></div>
  <table id="rejects-table">
    <thead><tr><th>stage</th><th>reason</th><th class="num">count</th><th class="num">hours</th><th class="num">% of input</th><th>examples</th></tr></thead>
    <tbody></tbody>
  </table>
</section>
<section id="tokens-sec">
  <h2>Token shards</h2>
  <div id="tokens" class="note">loading…</div>
</section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const SVGNS = "http://www.w3.org/2000/svg";
const state = { offset: 0, total: 0, limit: 50, selected: null };

async function api(path) {
  const r = await fetch(path);
  const j = await r.json();
  if (!r.ok) throw new Error(j.error || r.statusText);
  return j;
}
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}
function sv(tag, attrs) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}
const fmtH = (h) => h >= 10 ? h.toFixed(1) : h >= 0.1 ? h.toFixed(2) : h.toFixed(4);
const fmtN = (x, d) => (x === null || x === undefined) ? "" : Number(x).toFixed(d);
const mb = (b) => (b / 1e6).toFixed(2);

function bars(svg, items, key) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const W = 560, rowH = 22, labelW = 170, valW = 120;
  const n = Math.max(items.length, 1);
  svg.setAttribute("viewBox", `0 0 ${W} ${n * rowH + 6}`);
  svg.setAttribute("height", n * rowH + 6);
  svg.dataset.n = items.length;
  if (!items.length) { const t = sv("text", {x: 4, y: 16}); t.textContent = "no data"; svg.append(t); return; }
  const max = Math.max(...items.map((d) => d.hours), 1e-12);
  items.forEach((d, i) => {
    const y = i * rowH + 3;
    const lab = String(d[key] === "" ? "(empty)" : d[key]);
    const t = sv("text", {x: labelW - 6, y: y + 14, "text-anchor": "end"});
    t.textContent = lab.length > 26 ? lab.slice(0, 25) + "…" : lab;
    const w = Math.max(1, (W - labelW - valW) * d.hours / max);
    const r = sv("rect", {x: labelW, y: y + 2, width: w, height: rowH - 6, class: "bar"});
    const tt = sv("title"); tt.textContent = `${lab}: ${d.hours.toFixed(4)} h, ${d.samples} samples`; r.append(tt);
    const v = sv("text", {x: labelW + w + 5, y: y + 14});
    v.textContent = `${fmtH(d.hours)} h · ${d.samples}`;
    svg.append(t, r, v);
  });
}

function hist(canvas, h, unit) {
  const dpr = window.devicePixelRatio || 1;
  const W = canvas.clientWidth || 560, H = canvas.clientHeight || 220;
  canvas.width = W * dpr; canvas.height = H * dpr;
  const g = canvas.getContext("2d");
  g.scale(dpr, dpr);
  g.fillStyle = "#fff"; g.fillRect(0, 0, W, H);
  const L = 46, R = 10, T = 10, B = 34;
  g.strokeStyle = "#aab3bc"; g.beginPath(); g.moveTo(L, T); g.lineTo(L, H - B); g.lineTo(W - R, H - B); g.stroke();
  g.fillStyle = "#1d2329"; g.font = "11px system-ui, sans-serif";
  if (!h.counts.length) { g.fillText("no values", L + 10, T + 20); canvas.dataset.drawn = "0"; return; }
  const max = Math.max(...h.counts, 1), n = h.counts.length, bw = (W - L - R) / n;
  g.fillStyle = "#2f6fba";
  h.counts.forEach((c, i) => {
    const bh = (H - T - B) * c / max;
    g.fillRect(L + i * bw + 1, H - B - bh, Math.max(1, bw - 2), bh);
  });
  g.fillStyle = "#1d2329"; g.textAlign = "right";
  for (let k = 0; k <= 4; k++) {
    const v = Math.round(max * k / 4), y = H - B - (H - T - B) * k / 4;
    g.fillText(String(v), L - 5, y + 4);
  }
  g.textAlign = "center";
  const lo = h.edges[0], hi = h.edges[h.edges.length - 1];
  for (let k = 0; k <= 5; k++) {
    const x = L + (W - L - R) * k / 5, v = lo + (hi - lo) * k / 5;
    g.fillText(v.toFixed(Math.abs(hi - lo) < 10 ? 1 : 0), x, H - B + 14);
  }
  g.fillText(unit, L + (W - L - R) / 2, H - 4);
  canvas.dataset.drawn = String(n);
}

async function loadSummary() {
  const s = await api("/api/summary");
  $("uri").textContent = s.uri;
  const cards = [["samples", s.n_samples], ["hours", fmtH(s.hours)], ["sources", s.n_sources], ["speakers", s.n_speakers],
                 ["shards", s.n_shards], ["shard MB", mb(s.shard_bytes)], ["recordings", s.n_recordings], ["rejects", s.n_rejects]];
  const box = $("totals");
  for (const [k, v] of cards) box.append(el("div", {class: "card"}, el("b", {text: String(v)}), el("span", {text: k})));
  bars($("chart-source"), s.by_source, "source");
  bars($("chart-kind"), s.by_kind, "kind");
  bars($("chart-license"), s.by_license, "license");
  bars($("chart-speaker"), s.by_speaker, "speaker");
}
async function loadHists() {
  for (const [field, id, unit] of [["duration_s", "hist-duration", "seconds"], ["snr_db", "hist-snr", "dB"],
      ["dnsmos_ovrl", "hist-dnsmos_ovrl", "MOS"], ["dnsmos_sig", "hist-dnsmos_sig", "MOS"], ["dnsmos_bak", "hist-dnsmos_bak", "MOS"],
      ["bandwidth_hz", "hist-bandwidth", "Hz"], ["loudness_lufs", "hist-loudness", "LUFS"]]) {
    const h = await api(`/api/hist?field=${field}&bins=30`);
    hist($(id), h, unit);
    $(id + "-note").textContent = h.n ? `${h.n} samples · mean ${fmtN(h.mean, 2)} · median ${fmtN(h.median, 2)}` +
      (h.missing ? ` · ${h.missing} without a value` : "") : (h.missing ? `not measured in this run (${h.missing} samples)` : "no values");
  }
}
async function loadFilters() {
  const f = await api("/api/filters");
  for (const k of ["source", "kind", "license"]) {
    const s = $("f-" + k);
    for (const v of f[k]) s.append(el("option", {value: v, text: v === "" ? "(empty)" : v}));
  }
  const dl = $("speakers");
  for (const v of f.speaker) dl.append(el("option", {value: v}));
}
function params() {
  const p = new URLSearchParams();
  for (const k of ["source", "kind", "license", "speaker", "q", "sort"]) { const v = $("f-" + k).value.trim(); if (v) p.set(k, v); }
  state.limit = Number($("f-limit").value);
  p.set("limit", state.limit); p.set("offset", state.offset);
  return p;
}
async function loadSamples() {
  const t0 = performance.now();
  let r;
  try { r = await api("/api/samples?" + params().toString()); }
  catch (e) { $("page-info").textContent = "error: " + e.message; $("page-info").className = "err"; return; }
  $("page-info").className = "";
  state.total = r.total;
  const tb = $("samples-table").tBodies[0];
  tb.replaceChildren();
  for (const s of r.rows) {
    const play = el("button", {type: "button", title: "play", text: "\u25B6"});
    const tr = el("tr", {class: "sample-row", "data-id": s.sample_id, "data-kind": s.kind},
      el("td", {}, play), el("td", {class: "mono", text: s.sample_id}), el("td", {text: s.kind}), el("td", {text: s.source}),
      el("td", {text: (s.speakers || []).join(", ")}), el("td", {class: "num", text: fmtN(s.duration_s, 2)}),
      el("td", {class: "num", text: fmtN(s.snr_db, 1)}), el("td", {class: "num", text: fmtN(s.dnsmos_ovrl, 2)}),
      el("td", {class: "num", text: s.bandwidth_hz == null ? "" : fmtN(s.bandwidth_hz / 1000, 1)}),
      el("td", {class: "num", text: fmtN(s.loudness_lufs, 1)}), el("td", {text: s.license || ""}),
      el("td", {class: "text", text: (s.text || "") + (s.text_len > (s.text || "").length ? " …" : "")}));
    tr.addEventListener("click", () => openSample(s.sample_id, true));
    if (s.sample_id === state.selected) tr.classList.add("sel");
    tb.append(tr);
  }
  const a = r.total ? r.offset + 1 : 0, b = r.offset + r.rows.length;
  $("page-info").textContent = `${a}–${b} of ${r.total}${r.total_capped ? "+" : ""} (${Math.round(performance.now() - t0)} ms)`;
  $("page-info").dataset.total = String(r.total);
  $("prev").disabled = r.offset <= 0;
  $("next").disabled = r.total_capped ? r.rows.length < r.limit : b >= r.total;
}

function timeline(s) {
  const svg = $("timeline");
  svg.replaceChildren();
  const dur = Math.max(s.duration_s || 0, 1e-3);
  const dialog = s.kind === "dialog";
  const lanes = dialog ? [["system", "ch0 · system (L)"], ["user", "ch1 · user (R)"]] : [["", "mono"]];
  const laneH = 26, top = 4, labelW = 110, W = 1000;
  const H = top + lanes.length * laneH + 16;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.style.height = (H * 1.1) + "px";
  const x = (t) => labelW + (W - labelW - 6) * Math.min(Math.max(t / dur, 0), 1);
  lanes.forEach(([role, label], i) => {
    const y = top + i * laneH;
    svg.append(sv("rect", {x: labelW, y: y, width: W - labelW - 6, height: laneH - 6, fill: "#eef1f4"}));
    const t = sv("text", {x: 4, y: y + 15}); t.textContent = label; svg.append(t);
  });
  let n = 0;
  for (const tr of (s.turns || [])) {
    let lane = 0;
    if (dialog) lane = tr.role === "user" ? 1 : 0;
    const cls = tr.role === "system" ? "role-system" : tr.role === "user" ? "role-user" : "role-other";
    const y = top + lane * laneH;
    const r = sv("rect", {x: x(tr.start_s), y: y + 2, width: Math.max(1, x(tr.end_s) - x(tr.start_s)), height: laneH - 10,
                          class: "turn " + cls, "data-start": tr.start_s, "data-end": tr.end_s});
    const tt = sv("title"); tt.textContent = `${tr.role || "?"} ${tr.speaker || ""} ${tr.start_s.toFixed(2)}–${tr.end_s.toFixed(2)} s: ${tr.text || ""}`;
    r.append(tt);
    r.addEventListener("click", (ev) => { ev.stopPropagation(); const a = $("player"); a.currentTime = tr.start_s; a.play().catch(() => {}); });
    svg.append(r); n++;
  }
  const axisY = top + lanes.length * laneH + 10;
  for (let k = 0; k <= 10; k++) {
    const t = dur * k / 10, tx = sv("text", {x: x(t), y: axisY, "text-anchor": k === 0 ? "start" : k === 10 ? "end" : "middle"});
    tx.textContent = t.toFixed(1); svg.append(tx);
  }
  svg.append(sv("line", {id: "playhead", x1: labelW, x2: labelW, y1: 0, y2: top + lanes.length * laneH, stroke: "#b3261e", "stroke-width": 2}));
  svg.dataset.turns = String(n);
  svg.dataset.duration = String(dur);
  svg.dataset.x0 = labelW; svg.dataset.w = W - labelW - 6;
}
function movePlayhead() {
  const svg = $("timeline"), ph = $("playhead"), a = $("player");
  if (!ph || !svg.dataset.duration) return;
  const f = Math.min(Math.max(a.currentTime / Number(svg.dataset.duration), 0), 1);
  const px = Number(svg.dataset.x0) + Number(svg.dataset.w) * f;
  ph.setAttribute("x1", px); ph.setAttribute("x2", px);
}
async function openSample(id, play) {
  let s;
  try { s = await api("/api/sample/" + encodeURIComponent(id)); }
  catch (e) { $("player-panel").hidden = false; $("player-title").textContent = "error: " + e.message; return; }
  state.selected = id;
  for (const tr of document.querySelectorAll("tr.sample-row")) tr.classList.toggle("sel", tr.dataset.id === id);
  $("player-panel").hidden = false;
  $("player-panel").dataset.sample = id;
  $("player-title").textContent = `${s.sample_id} · ${s.kind} · ${fmtN(s.duration_s, 2)} s`;
  $("player-note").textContent = s.kind === "dialog" ? "stereo: left = ch0 (system), right = ch1 (user)" : "mono";
  const a = $("player");
  a.src = "/api/audio/" + encodeURIComponent(id) + ".wav";
  timeline(s);
  $("sample-meta").textContent = `source ${s.source} · recording ${s.recording_id} @ ${fmtN(s.start_s, 2)}–${fmtN(s.end_s, 2)} s · ` +
    `speakers ${(s.speakers || []).join(", ")} · license ${s.license} · SNR ${fmtN(s.snr_db, 1)} dB · speech ${fmtN(s.speech_ratio, 2)} · ` +
    `DNSMOS SIG/BAK/OVRL ${fmtN(s.dnsmos_sig, 2)}/${fmtN(s.dnsmos_bak, 2)}/${fmtN(s.dnsmos_ovrl, 2)} · bandwidth ${fmtN(s.bandwidth_hz, 0)} Hz · ` +
    `loudness ${fmtN(s.loudness_lufs, 1)} LUFS` + (s.loudness_normalized_to == null ? "" : ` (written at ${fmtN(s.loudness_normalized_to, 1)} LUFS target, gain ${fmtN(s.loudness_gain_db, 1)} dB)`) +
    ` · shard ${s.shard}`;
  if (location.hash !== "#sample=" + encodeURIComponent(id)) history.replaceState(null, "", "#sample=" + encodeURIComponent(id));
  if (play) a.play().catch(() => {});
}
async function loadShards() {
  const r = await api("/api/shards?limit=1000");
  const tb = $("shards-table").tBodies[0];
  tb.replaceChildren();
  for (const s of r.rows) {
    tb.append(el("tr", {class: "shard-row"}, el("td", {class: "mono", text: s.uri}), el("td", {text: s.kind + (s.codec_id ? " · " + s.codec_id : "")}),
      el("td", {text: s.sample_kind || ""}), el("td", {class: "num", text: String(s.n_samples)}), el("td", {class: "num", text: fmtN(s.seconds, 1)}),
      el("td", {class: "num", text: mb(s.bytes)}), el("td", {class: "mono", text: s.sha256, title: s.sha256})));
  }
  $("shards-note").textContent = r.total > r.rows.length ? `first ${r.rows.length} of ${r.total} shards` : `${r.total} shards`;
}
async function loadRejects() {
  const r = await api("/api/rejects");
  const tb = $("rejects-table").tBodies[0];
  tb.replaceChildren();
  $("rejects-note").textContent = r.total ? `${r.total} rejected items` : "no rejects";
  for (const g of r.groups) {
    const ex = el("div", {class: "ex"});
    for (const e of g.examples) ex.append(el("div", {}, el("span", {class: "mono", text: e.item}), " — " + (e.detail || "")));
    tb.append(el("tr", {class: "reject-row"}, el("td", {text: g.stage}), el("td", {class: "mono", text: g.reason}),
      el("td", {class: "num", text: String(g.count)}), el("td", {class: "num", text: fmtN(g.hours, 4)}),
      el("td", {class: "num", text: g.share == null ? "" : fmtN(100 * g.share, 2)}), el("td", {}, ex)));
  }
}
async function loadTokens() {
  const r = await api("/api/tokens");
  const box = $("tokens");
  box.replaceChildren();
  if (!r.available) { box.textContent = "no token shards in this output (run matalu encode)"; box.dataset.codecs = "0"; return; }
  box.className = "";
  box.dataset.codecs = String(r.codecs.length);
  r.codecs.forEach((c, i) => {
    const facts = [["codec", c.codec_id || "(none)"], ["shards", c.shards ?? ""], ["samples", c.samples ?? ""],
      ["hours", c.seconds != null ? fmtH(c.seconds / 3600) : ""], ["frames", (c.frames ?? "") + (c.frames_exact === false ? " (scanned)" : "")],
      ["codebooks", c.n_codebooks ?? ""], ["codebook size", (c.codebook_size ?? "") + (c.codebook_size_known ? "" : " (max seen)")],
      ["MB", c.bytes != null ? mb(c.bytes) : ""]];
    const cards = el("div", {class: "cards"});
    for (const [k, v] of facts) cards.append(el("div", {class: "card"}, el("b", {text: String(v)}), el("span", {text: k})));
    const svg = sv("svg", {id: "tokens-usage-" + i, class: "bars", width: "100%"});
    bars(svg, (c.usage || []).map((u) => ({codebook: "codebook " + u.codebook, hours: u.usage, samples: `${u.distinct}/${u.size} used, ppl ${u.perplexity.toFixed(0)}`})), "codebook");
    for (const t of svg.querySelectorAll("text")) t.textContent = t.textContent.replace(/^([0-9.]+) h · /, (m, v) => (100 * Number(v)).toFixed(1) + "% · ");
    box.append(el("h3", {text: c.codec_id || "(no codec id)"}), cards,
      el("div", {class: "note", text: `codebook usage over ${c.scanned_samples} samples (${c.scanned_frames} frames)`}), svg);
  });
}

$("filters").addEventListener("submit", (e) => { e.preventDefault(); state.offset = 0; loadSamples(); });
for (const k of ["source", "kind", "license", "sort", "limit"]) $("f-" + k).addEventListener("change", () => { state.offset = 0; loadSamples(); });
let qTimer = null;
for (const k of ["q", "speaker"]) $("f-" + k).addEventListener("input", () => { clearTimeout(qTimer); qTimer = setTimeout(() => { state.offset = 0; loadSamples(); }, 350); });
$("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); loadSamples(); });
$("next").addEventListener("click", () => { if (!$("next").disabled) { state.offset += state.limit; loadSamples(); } });
$("player").addEventListener("timeupdate", movePlayhead);
$("player").addEventListener("seeked", movePlayhead);
$("player").addEventListener("play", function tick() { movePlayhead(); if (!$("player").paused) requestAnimationFrame(tick); });

async function main() {
  const jobs = [loadSummary(), loadHists(), loadFilters().then(loadSamples), loadShards(), loadRejects(), loadTokens()];
  const m = location.hash.match(/^#sample=(.+)$/);
  if (m) jobs.push(openSample(decodeURIComponent(m[1]), false));
  const res = await Promise.allSettled(jobs);
  const bad = res.filter((r) => r.status === "rejected");
  for (const b of bad) document.querySelector("header").append(el("div", {class: "err", text: "error: " + b.reason}));
  document.body.dataset.ready = bad.length ? "error" : "1";
}
main();
</script>
</body>
</html>
"""
