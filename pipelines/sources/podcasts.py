"""Podcasts and talk channels: your own list of channel, playlist, feed or episode URLs, fetched with yt-dlp.

``urls`` is a list file (one URL a line; ``#`` comments and blank lines are ignored) or a list of URLs.
``download()`` uses yt-dlp's Python API with a download archive (``download_archive.txt``: reruns skip what was
fetched), ``--write-info-json``, a rate limit and a sleep between downloads, and files named
``media/<extractor>-<id>.<ext>``. Every URL is tried on its own: one that fails (removed, private, geo-blocked,
HTTP error, not a media page) is written to ``failures.jsonl`` as ``{url, error, reason}`` and the job goes on.
Channels, playlists and RSS feeds are expanded here and their entries fetched one by one, so one private episode
does not stop the rest of its channel.

``prepare()`` pairs each ``*.info.json`` with its media file and yields mono ``Recording`` rows (podcasts are
several speakers on one channel: turns come from diarization, later). What the recording rows cannot hold
(channel, uploader, upload date, page URL, title, duration, the list URL it came from) is written to
``lineage.jsonl`` keyed by ``recording_id`` and in each Recording's ``extra`` (JSON). Failed URLs and unpaired files become ``Reject`` rows.

Respect each channel's terms: the license is taken from the info JSON when the site states one, otherwise it is
recorded as unknown.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from manifests.rows import Recording, Reject
from pipelines.sources import common
from pipelines.sources.manifest import safe_id

NAME = "podcasts"
INFO = {
    "name": NAME,
    "hours": "yours",
    "license": "per channel",
    "access": "user-supplied URLs",
    "kind": "mono (dialog after diarization)",
    "description": "channel / playlist / RSS feed / episode URLs fetched with yt-dlp (download archive, rate limit, "
                   "info JSON kept as lineage)",
}
UNKNOWN_LICENSE = "unknown (check the channel's terms)"
ARCHIVE_FILE = "download_archive.txt"
FAILURES_FILE = "failures.jsonl"
LINEAGE_FILE = "lineage.jsonl"
FETCHED_FILE = "fetched.jsonl"  # URL -> archive id of what it gave, so single-item URLs are not even re-requested
MEDIA_DIR = "media"
OUTTMPL = "%(extractor)s-%(id)s.%(ext)s"
LINEAGE_FIELDS = ("channel", "channel_id", "channel_url", "uploader", "uploader_id", "upload_date", "webpage_url",
                  "title", "duration", "license", "extractor", "id", "playlist", "playlist_id",
                  "list_url")
_PARTIAL = re.compile(r"\.(?:part|ytdl|temp|tmp)(?:-Frag\d+)?$")
_MAX_DEPTH = 4  # channel -> tab -> playlist -> entry

log = logging.getLogger("matalu.sources.podcasts")


# -- the URL list ---------------------------------------------------------------------------------------------
def read_urls(urls: str | os.PathLike | list | tuple | None) -> list[str]:
    """The URLs to fetch, in order, without duplicates: from a list file, or a list of URLs."""
    if urls is None or urls == "" or urls == []:
        raise ValueError("the podcasts source needs options.urls: a list file (one channel/playlist/feed/episode "
                         "URL a line) or a list of URLs")
    if isinstance(urls, (str, os.PathLike)):
        p = Path(urls).expanduser()
        if p.is_file():
            from pipelines.sources.listing import read_lines  # BOM; a non-UTF-8 line is named

            lines = [line for _, line in read_lines(p)]
        elif "://" in str(urls):
            lines = [str(urls)]
        else:
            raise FileNotFoundError(f"podcasts URL list {p} does not exist")
    else:
        lines = [str(u) for u in urls]
    out: list[str] = []
    for line in lines:
        line = re.sub(r"\s+#.*$", "", line).strip()  # trailing " # comment" (a '#' inside a URL stays)
        if not line or line.startswith("#"):
            continue
        if "://" not in line:
            raise ValueError(f"podcasts: {line!r} is not a URL (expected http(s)://...)")
        if line not in out:
            out.append(line)
    if not out:
        raise ValueError("podcasts: the URL list holds no URLs")
    return out


# -- errors ---------------------------------------------------------------------------------------------------
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _message(e: BaseException) -> str:
    msg = _ANSI.sub("", str(e)).strip()
    msg = re.sub(r"^ERROR:\s*", "", msg)
    msg = re.sub(r";?\s*please report this issue on\s.*$", "", msg, flags=re.DOTALL)
    return msg.strip() or type(e).__name__


def classify(e: BaseException | None, message: str = "") -> str:
    """A short reason code for a failed URL: unavailable, private, blocked, http_error, unsupported, download_error."""
    from yt_dlp.utils import GeoRestrictedError, UnsupportedError

    chain: list[BaseException] = []
    seen: set[int] = set()
    cur = e
    while cur is not None and id(cur) not in seen and len(chain) < 8:
        seen.add(id(cur))
        chain.append(cur)
        exc_info = getattr(cur, "exc_info", None)
        nxt = exc_info[1] if exc_info and len(exc_info) > 1 and exc_info[1] is not cur else None
        cur = nxt or getattr(cur, "cause", None) or cur.__cause__
    msg = (message or " ".join(_message(c) for c in chain)).lower()
    if any(isinstance(c, GeoRestrictedError) for c in chain) or re.search(
            r"(?:in|from) your (?:country|location|region)|geo.?restrict|blocked it in your|not a bot", msg):
        return "blocked"
    if re.search(r"private video|this video is private|sign in if you've been granted|members.only|"
                 r"join this channel|sign in to confirm your age|login required|requires (?:a )?(?:login|subscription)|"
                 r"account (?:cookies|credentials)|use --cookies", msg):
        return "private"
    if any(isinstance(c, UnsupportedError) for c in chain) or "unsupported url" in msg:
        return "unsupported"
    status = None
    for c in chain:
        status = getattr(c, "status", None) or getattr(c, "code", None)
        if isinstance(status, int):
            break
        status = None
    if status is None:
        m = re.search(r"http error (\d{3})", msg)
        status = int(m.group(1)) if m else None
    if status in (404, 410) or re.search(r"video unavailable|has been removed|no longer available|"
                                         r"does not exist|account .*terminated|is not available", msg):
        return "unavailable"
    if status in (401,):
        return "private"
    if status in (403, 451):
        return "blocked"
    if status is not None:
        return "http_error"
    return "download_error"


# -- yt-dlp glue ----------------------------------------------------------------------------------------------
class _Logger:
    """yt-dlp's messages go to our logger, quietly: failures are reported once per URL by download()."""

    def debug(self, msg: str) -> None:
        log.debug(_ANSI.sub("", msg))

    def info(self, msg: str) -> None:
        log.debug(_ANSI.sub("", msg))

    def warning(self, msg: str) -> None:
        log.info(_ANSI.sub("", msg))

    def error(self, msg: str) -> None:
        log.debug(_ANSI.sub("", msg))


class _Progress:
    """A rich bar per file on a terminal, else one plain line per finished file (or nothing when disabled)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._rich = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> "_Progress":
        if self.enabled and sys.stderr.isatty():
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._rich = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                                  TransferSpeedColumn(), TimeRemainingColumn(), transient=False)
            self._rich.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.__exit__(*exc)

    def hook(self, d: dict) -> None:
        if not self.enabled:
            return
        name = Path(str(d.get("filename") or d.get("tmpfilename") or "?")).name
        total = d.get("total_bytes") or d.get("total_bytes_estimate")
        done = d.get("downloaded_bytes") or 0
        if self._rich is not None:
            task = self._tasks.get(name)
            if task is None:
                task = self._tasks[name] = self._rich.add_task(name, total=total)
            self._rich.update(task, completed=done, total=total or None)
        elif d.get("status") == "finished":
            print(f"[podcasts] downloaded {name} ({done / 1e6:.1f} MB)", flush=True)

    def say(self, msg: str) -> None:
        if self._rich is not None:
            self._rich.console.print(msg)
        elif self.enabled:
            print(msg, flush=True)


def _rate(rate_limit: str | float | None) -> int | None:
    if rate_limit in (None, "", 0):
        return None
    if isinstance(rate_limit, (int, float)):
        return int(rate_limit)
    from yt_dlp.utils import parse_bytes

    n = parse_bytes(str(rate_limit))
    if n is None:
        raise ValueError(f"podcasts: rate_limit {rate_limit!r} is not a rate like 2M or 500K (bytes per second)")
    return n


def _plain(url: str) -> str:
    """``url`` without yt-dlp's smuggled data (RSS entries carry ``#__youtubedl_smuggle=...``)."""
    from yt_dlp.utils import unsmuggle_url

    return unsmuggle_url(url)[0] if url else url


def _read_jsonl(p: Path) -> list[dict]:
    if not p.exists():
        return []
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _write_jsonl(p: Path, rows: list[dict]) -> None:
    from storage import write_text  # atomic; no temp file left on error

    write_text(str(p), "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows))


class _Fetcher:
    """Fetches one list URL at a time; playlists/channels/feeds are expanded and their entries fetched one by one."""

    def __init__(self, ydl: Any, fetched: dict[str, str], progress: _Progress) -> None:
        self.ydl, self.fetched, self.progress = ydl, fetched, progress
        self.failures: list[dict] = []
        self.downloaded = 0
        self.skipped = 0

    def _archived(self, archive_id: str | None) -> bool:
        return bool(archive_id) and archive_id in (self.ydl.archive or ())

    def _remember(self, url: str, info: dict | None) -> None:
        from yt_dlp.utils import make_archive_id

        if info and info.get("id") and info.get("extractor_key") and info.get("_type", "video") == "video":
            self.fetched[_plain(url)] = make_archive_id(info["extractor_key"], info["id"])

    def _fail(self, url: str, e: BaseException, list_url: str) -> None:
        url, list_url = _plain(url), _plain(list_url)
        row = {"url": url, "error": _message(e), "reason": classify(e)}
        if list_url != url:
            row["list_url"] = list_url
        self.failures.append(row)
        log.warning("podcasts: %s failed (%s): %s", url, row["reason"], row["error"])
        self.progress.say(f"[podcasts] failed ({row['reason']}): {url}: {row['error']}")

    def fetch(self, url: str, list_url: str, extra: dict | None = None, depth: int = 0) -> None:
        """Fetch ``url`` (a list URL, or an entry of one); failures are recorded, never raised (except stop signals)."""
        from yt_dlp.utils import DownloadCancelled

        if self._archived(self.fetched.get(_plain(url))):
            self.skipped += 1
            log.debug("podcasts: %s already fetched (%s)", url, self.fetched[_plain(url)])
            return
        extra_info = {"list_url": list_url, **(extra or {})}
        try:
            ie_result = self.ydl.extract_info(url, download=False, process=False)
        except DownloadCancelled:
            raise
        except Exception as e:  # noqa: BLE001 - every failure is recorded and the job goes on
            self._fail(url, e, list_url)
            return
        if ie_result is None:  # the extractor knew the id from the URL and it is in the archive
            self.skipped += 1
            return
        kind = ie_result.get("_type", "video")
        if kind in ("playlist", "multi_video", "compat_list"):
            self._playlist(url, ie_result, list_url, depth)
            return
        if kind == "url" and depth < _MAX_DEPTH:  # a redirect to another page
            self.fetch(ie_result["url"], list_url, extra, depth + 1)
            return
        self._process(url, ie_result, extra_info, list_url)

    def _process(self, url: str, ie_result: dict, extra_info: dict, list_url: str) -> None:
        from yt_dlp.utils import DownloadCancelled

        before = set(self.ydl.archive or ())
        try:
            info = self.ydl.process_ie_result(ie_result, download=True, extra_info=extra_info)
        except DownloadCancelled:  # max_downloads: the item that reached it was fetched
            self._note_new(url, before)
            raise
        except Exception as e:  # noqa: BLE001
            self._fail(url, e, list_url)
            return
        if self._note_new(url, before):
            self.downloaded += 1
        else:
            self.skipped += 1
            self._remember(url, info)

    def _note_new(self, url: str, before: set) -> bool:
        new = set(self.ydl.archive or ()) - before
        if len(new) == 1:
            self.fetched[_plain(url)] = next(iter(new))
        return bool(new)

    def _playlist(self, url: str, result: dict, list_url: str, depth: int) -> None:
        from yt_dlp.utils import DownloadCancelled

        extra = {k: v for k, v in {"playlist": result.get("title"), "playlist_id": result.get("id")}.items() if v}
        try:
            for entry in result.get("entries") or ():
                if not entry:
                    continue
                etype = entry.get("_type", "video")
                eurl = entry.get("url") or entry.get("webpage_url") or ""
                if etype == "url" and eurl:
                    if entry.get("id") and entry.get("ie_key") and self.ydl.in_download_archive(entry):
                        self.skipped += 1
                        continue
                    if depth < _MAX_DEPTH:
                        self.fetch(eurl, list_url, extra, depth + 1)
                    continue
                if etype in ("playlist", "multi_video") and depth < _MAX_DEPTH:
                    self._playlist(eurl or url, entry, list_url, depth + 1)
                    continue
                item = eurl if etype == "url_transparent" and eurl else (entry.get("webpage_url") or eurl or url)
                if self._archived(self.fetched.get(_plain(item))):
                    self.skipped += 1
                    continue
                self._process(item, entry, {"list_url": list_url, **extra}, list_url)
        except DownloadCancelled:
            raise
        except Exception as e:  # noqa: BLE001 - a feed/channel page that fails half-way: what was fetched stays
            self._fail(url, e, list_url)


def download(target: str | Path, *, urls: str | list | None = None, archive: str | None = None,
             mirror: str | None = None, sha256: dict | None = None, progress: bool = True,
             rate_limit: str | int | None = "2M", sleep_interval: float = 1.0, max_downloads: int | None = None,
             cookies: str | None = None, format: str = "bestaudio/best", refresh: bool = False, **_: object) -> Path:
    """Fetch every URL in ``urls`` into ``target/media`` (skipped when ``.completed`` records the same list).

    ``archive``, ``mirror`` and ``sha256`` do not apply to this source (the URLs are the user's) and are ignored.
    ``refresh=True`` reruns a finished list (new episodes; retry failures); the download archive keeps it cheap.
    A run that stops at ``max_downloads`` is not marked complete: the next run goes on from there.
    """
    import yt_dlp
    from yt_dlp.utils import MaxDownloadsReached

    target = Path(target)
    url_list = read_urls(urls)
    key = {"source": NAME, "urls": url_list}
    if not refresh and common.completed(target, key):
        return target
    if cookies and not Path(cookies).expanduser().is_file():
        raise FileNotFoundError(f"podcasts: cookies file {cookies} does not exist (a Netscape cookies.txt)")
    media = target / MEDIA_DIR
    media.mkdir(parents=True, exist_ok=True)
    (target / ".completed").unlink(missing_ok=True)  # until this run finishes, target matches no list
    fetched = {r["url"]: r["archive_id"] for r in _read_jsonl(target / FETCHED_FILE) if r.get("url") and r.get("archive_id")}
    bar = _Progress(progress)
    opts: dict[str, Any] = {
        "format": format,
        "outtmpl": {"default": str(media / OUTTMPL)},
        "restrictfilenames": True,
        "download_archive": str(target / ARCHIVE_FILE),
        "writeinfojson": True,
        "allow_playlist_files": False,  # only per-item info JSONs: one per media file
        "ratelimit": _rate(rate_limit),
        "sleep_interval": float(sleep_interval or 0) or None,
        "ignoreerrors": False,
        "noplaylist": False,
        "logger": _Logger(),
        "quiet": True,
        "no_warnings": False,
        "noprogress": True,
        "progress_hooks": [bar.hook],
        "postprocessors": [],
        "writethumbnail": False,
        "writesubtitles": False,
        "continuedl": True,
        "retries": 3,
        "fragment_retries": 3,
        "color": {"stdout": "no_color", "stderr": "no_color"},
    }
    if max_downloads:
        opts["max_downloads"] = int(max_downloads)
    if cookies:
        opts["cookiefile"] = str(Path(cookies).expanduser())
    finished = True
    with bar, yt_dlp.YoutubeDL(opts) as ydl:
        f = _Fetcher(ydl, fetched, bar)
        try:
            for url in url_list:
                f.fetch(url, url)
        except MaxDownloadsReached:
            finished = False
            bar.say(f"[podcasts] stopped after max_downloads={max_downloads}; rerun to go on")
        finally:
            _write_jsonl(target / FETCHED_FILE, [{"url": u, "archive_id": a} for u, a in sorted(fetched.items())])
            _write_jsonl(target / FAILURES_FILE, f.failures)
    msg = (f"[podcasts] {f.downloaded} downloaded, {f.skipped} already fetched, {len(f.failures)} failed"
           + (f" (see {target / FAILURES_FILE})" if f.failures else ""))
    log.info(msg)
    bar.say(msg)
    if finished:
        common.mark_completed(target, key)
    return target


# -- prepare --------------------------------------------------------------------------------------------------
def _media_for(stem: str, media_dir: Path) -> Path | None:
    for p in sorted(media_dir.glob(f"{glob.escape(stem)}.*")):
        if p.name.endswith(".info.json") or _PARTIAL.search(p.name):
            continue
        if p.is_file():
            return p
    return None


def prepare(downloaded: str | Path, *, urls: str | list | None = None, **_: object) -> Iterator[Recording | Reject]:
    """Recordings from the info JSON + media pairs; failed URLs and unpaired files as rejects; lineage.jsonl.

    With ``urls`` (the same option download() got), items whose list URL is no longer listed are left out."""
    root = Path(downloaded)
    media_dir = root / MEDIA_DIR
    if not media_dir.is_dir() and not (root / FAILURES_FILE).exists():
        raise FileNotFoundError(f"{root} holds no podcasts download; run download() first")
    current = set(read_urls(urls)) if urls else None
    failures = _read_jsonl(root / FAILURES_FILE)
    failed_urls = {r.get("url") for r in failures}
    for r in failures:
        reason = r.get("reason") or classify(None, str(r.get("error", "")))
        yield Reject(item=str(r.get("url", "")), stage="download", reason=reason, detail=str(r.get("error", "")),
                     source=NAME)
    lineage: list[dict] = []
    paired: set[Path] = set()
    dropped = 0
    for info_path in sorted(media_dir.glob("*.info.json")) if media_dir.is_dir() else ():
        stem = info_path.name[: -len(".info.json")]
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            yield Reject(item=info_path.name, stage="prepare", reason="bad_info_json", detail=f"unreadable info JSON: {e}",
                         source=NAME, recording_id=safe_id(stem))
            continue
        if info.get("_type", "video") != "video":
            continue  # a playlist's own info JSON (written by older settings)
        media = _media_for(stem, media_dir)
        if media is not None:
            paired.add(media)
        if current is not None and info.get("list_url") and info["list_url"] not in current:
            dropped += 1
            continue
        extractor = info.get("extractor") or info.get("extractor_key") or "unknown"
        rid = safe_id(f"{extractor}-{info.get('id') or stem}")
        if media is None:
            page = _plain(info.get("webpage_url") or "")
            if page in failed_urls:
                continue  # its failure is already a download reject
            yield Reject(item=page or info_path.name, stage="prepare", reason="missing_media",
                         detail=f"{info_path.name} has no media file beside it (interrupted or failed download)",
                         source=NAME, recording_id=rid)
            continue
        speaker = info.get("uploader") or info.get("channel") or info.get("uploader_id") or info.get("channel_id") or ""
        lineage.append({"recording_id": rid, "file": f"{MEDIA_DIR}/{media.name}",
                        **{k: info.get(k) for k in LINEAGE_FIELDS}, "webpage_url": _plain(info.get("webpage_url") or "")})
        extra = json.dumps({k: v for k, v in lineage[-1].items() if k not in ("recording_id", "file")},
                           ensure_ascii=False, sort_keys=True, default=str)
        yield Recording(
            recording_id=rid,
            source=NAME,
            uri=str(media.resolve()),
            speaker_id=str(speaker),
            text="",
            language="te",
            license=str(info.get("license") or UNKNOWN_LICENSE),
            split="",
            extra=extra,
        )
    if media_dir.is_dir():
        for p in sorted(media_dir.iterdir()):
            if p.is_file() and p not in paired and not p.name.endswith(".info.json") and not _PARTIAL.search(p.name):
                yield Reject(item=p.name, stage="prepare", reason="missing_media",
                             detail=f"{p.name} has no info JSON beside it, so no lineage: not used",
                             source=NAME, recording_id=safe_id(p.stem))
    if dropped:
        log.info("podcasts: %d downloaded item(s) left out: their list URL is no longer in urls", dropped)
    _write_jsonl(root / LINEAGE_FILE, lineage)
