"""The podcasts recipe, offline: yt-dlp's generic extractor fetches media served from 127.0.0.1 only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from manifests import read_rows
from manifests.io import manifest_uri
from manifests.rows import Recording, Reject, Sample
from pipelines.sources import podcasts
from tests.audio import telugu_speech, write_as
from tests.httpserver import http_server  # noqa: F401

HTML = b"<!DOCTYPE html><html><head><title>About us</title></head><body><p>No media here.</p></body></html>"


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("media")
    x = telugu_speech()
    return {ext: write_as(d / f"talk.{ext}", x, 16000).read_bytes() for ext in ("m4a", "mp3")}


def _serve(srv, media: dict[str, bytes]) -> dict[str, str]:
    u = {
        "m4a": srv.add("talk1.m4a", media["m4a"]),
        "mp3": srv.add("shows/talk2.mp3", media["mp3"]),
        "page": srv.add("about.html", HTML),
        "gone": srv.url("removed/episode9.m4a"),  # never added: 404
        "ep1": srv.add("feed/ep1.mp3", media["mp3"]),
    }
    feed = f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Telugu talk</title><link>{srv.base_url}</link>
<item><title>Episode 1</title><guid>ep1</guid><enclosure url="{u['ep1']}" type="audio/mpeg" length="1"/></item>
<item><title>Episode 2</title><guid>ep2</guid><enclosure url="{srv.url('feed/ep2.mp3')}" type="audio/mpeg" length="1"/></item>
</channel></rss>"""
    u["feed"] = srv.add("feed.xml", feed.encode())
    u["ep2"] = srv.url("feed/ep2.mp3")
    return u


def _list_file(path: Path, urls: list[str]) -> Path:
    path.write_text("# Telugu talk shows\n\n" + "\n".join(urls) + "\n  # the end\n", encoding="utf-8")
    return path


def test_read_urls(tmp_path):
    f = tmp_path / "urls.txt"
    f.write_text("# a comment\n\nhttps://a.example/x  # trailing note\nhttps://a.example/x\n https://b.example/p#t=1 \n")
    assert podcasts.read_urls(str(f)) == ["https://a.example/x", "https://b.example/p#t=1"]
    assert podcasts.read_urls(["https://c.example/1", "", "# no"]) == ["https://c.example/1"]
    with pytest.raises(FileNotFoundError):
        podcasts.read_urls(str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="needs options.urls"):
        podcasts.read_urls(None)
    with pytest.raises(ValueError, match="not a URL"):
        podcasts.read_urls(["not-a-url"])


@pytest.mark.parametrize("message,reason", [
    ("ERROR: [youtube] abc: Private video. Sign in if you've been granted access to this video", "private"),
    ("[youtube] abc: Video unavailable. This video has been removed by the uploader", "unavailable"),
    ("[youtube] abc: The uploader has not made this video available in your country", "blocked"),
    ("[generic] x: Unable to download webpage: HTTP Error 404: Not Found", "unavailable"),
    ("[generic] x: Unable to download webpage: HTTP Error 503: Service Unavailable", "http_error"),
    ("Unsupported URL: https://example.org/about", "unsupported"),
    ("[generic] x: Unable to download webpage: <urlopen error timed out>", "download_error"),
])
def test_classify(message, reason):
    assert podcasts.classify(None, message) == reason


def test_download_archive_failures_lineage(http_server, media, tmp_path):  # noqa: F811
    u = _serve(http_server, media)
    target = tmp_path / "podcasts"
    urls = [u["m4a"], u["mp3"], u["gone"], u["page"], u["feed"]]
    listfile = _list_file(tmp_path / "urls.txt", urls)

    podcasts.download(target, urls=str(listfile), sleep_interval=0, progress=False)
    files = sorted(p.name for p in (target / "media").iterdir())
    assert files == ["generic-ep1.info.json", "generic-ep1.mp3", "generic-talk1.info.json", "generic-talk1.m4a",
                     "generic-talk2.info.json", "generic-talk2.mp3"]
    assert (target / "media" / "generic-talk1.m4a").read_bytes() == media["m4a"]
    assert (target / "media" / "generic-talk2.mp3").read_bytes() == media["mp3"]
    info = json.loads((target / "media" / "generic-talk2.info.json").read_text())
    assert info["webpage_url"] == u["mp3"] and info["extractor"] == "generic" and info["id"] == "talk2"
    assert info["list_url"] == u["mp3"]
    archive = (target / "download_archive.txt").read_text().split("\n")
    assert {"generic talk1", "generic talk2", "generic ep1"} <= set(archive)
    failures = {r["url"]: r for r in map(json.loads, (target / "failures.jsonl").read_text().splitlines())}
    assert set(failures) == {u["gone"], u["page"], u["ep2"]}
    assert failures[u["gone"]]["reason"] == "unavailable" and "404" in failures[u["gone"]]["error"]
    assert failures[u["page"]]["reason"] == "unsupported"
    assert failures[u["ep2"]]["list_url"] == u["feed"]  # one bad episode does not stop its feed

    rows = list(podcasts.prepare(target, urls=str(listfile)))
    recs = {r.recording_id: r for r in rows if isinstance(r, Recording)}
    rejects = {r.item: r for r in rows if isinstance(r, Reject)}
    assert set(recs) == {"generic-talk1", "generic-talk2", "generic-ep1"}
    for r in recs.values():
        assert Path(r.uri).is_absolute() and Path(r.uri).is_file()
        assert r.source == "podcasts" and r.language == "te" and r.text == "" and r.split == ""
        assert r.turns == [] and r.channel_roles == []  # mono: diarization comes later
        assert r.license == podcasts.UNKNOWN_LICENSE
    assert {k: (v.stage, v.reason) for k, v in rejects.items()} == {
        u["gone"]: ("download", "unavailable"), u["page"]: ("download", "unsupported"),
        u["ep2"]: ("download", "unavailable")}
    assert all(v.detail and v.source == "podcasts" for v in rejects.values())
    lineage = {d["recording_id"]: d for d in map(json.loads, (target / "lineage.jsonl").read_text().splitlines())}
    assert set(lineage) == set(recs)
    assert lineage["generic-talk1"]["webpage_url"] == u["m4a"] and lineage["generic-talk1"]["title"] == "talk1"
    assert lineage["generic-ep1"]["title"] == "Episode 1" and lineage["generic-ep1"]["playlist"] == "Telugu talk"
    assert lineage["generic-ep1"]["list_url"] == u["feed"] and lineage["generic-ep1"]["webpage_url"] == u["ep1"]
    assert {"channel", "uploader", "upload_date", "duration"} <= set(lineage["generic-talk1"])

    # the same list again: finished, nothing is requested at all
    n = http_server.count()
    podcasts.download(target, urls=str(listfile), sleep_interval=0, progress=False)
    assert http_server.count() == n

    # a changed list reruns; the archive means fetched media is not requested again, the new one is fetched
    gets = {k: http_server.count(k) for k in ("talk1.m4a", "shows/talk2.mp3", "feed/ep1.mp3")}
    new = http_server.add("talk3.m4a", media["m4a"])
    _list_file(listfile, urls + [new])
    podcasts.download(target, urls=str(listfile), sleep_interval=0, progress=False)
    assert {k: http_server.count(k) for k in gets} == gets
    assert http_server.count("talk3.m4a") >= 1
    assert (target / "media" / "generic-talk3.m4a").read_bytes() == media["m4a"]
    assert "generic talk3" in (target / "download_archive.txt").read_text().split("\n")
    assert len((target / "failures.jsonl").read_text().splitlines()) == 3  # failures are retried, still failing

    # a URL taken off the list takes its recordings out of prepare()
    _list_file(listfile, [u["m4a"], new])
    ids = {r.recording_id for r in podcasts.prepare(target, urls=str(listfile)) if isinstance(r, Recording)}
    assert ids == {"generic-talk1", "generic-talk3"}


def test_max_downloads_stops_and_resumes(http_server, media, tmp_path):  # noqa: F811
    a = http_server.add("a1.mp3", media["mp3"])
    b = http_server.add("b2.mp3", media["mp3"])
    target = tmp_path / "podcasts"
    podcasts.download(target, urls=[a, b], sleep_interval=0, progress=False, max_downloads=1)
    assert sorted(p.name for p in (target / "media").glob("*.mp3")) == ["generic-a1.mp3"]
    assert not (target / ".completed").exists()  # capped: the next run goes on
    podcasts.download(target, urls=[a, b], sleep_interval=0, progress=False, max_downloads=1)
    assert sorted(p.name for p in (target / "media").glob("*.mp3")) == ["generic-a1.mp3", "generic-b2.mp3"]
    assert http_server.count("a1.mp3") == 2  # extraction + download, once: the rerun skipped it
    with pytest.raises(FileNotFoundError, match="cookies"):
        podcasts.download(tmp_path / "other", urls=[a], cookies=str(tmp_path / "nope.txt"))


def test_unpaired_files_are_rejected(tmp_path):
    media_dir = tmp_path / "media"
    media_dir.mkdir()
    (media_dir / "generic-a.info.json").write_text(json.dumps({"id": "a", "extractor": "generic", "webpage_url": "http://x/a"}))
    (media_dir / "generic-b.mp3").write_bytes(b"\xff\xfb" + b"\0" * 100)
    (media_dir / "generic-c.m4a.part").write_bytes(b"\0" * 10)  # an interrupted download: resumed, not rejected
    (tmp_path / "failures.jsonl").write_text(json.dumps({"url": "http://x/z", "error": "Private video"}) + "\n")
    rows = list(podcasts.prepare(tmp_path))
    assert not [r for r in rows if isinstance(r, Recording)]
    got = {(r.item, r.stage, r.reason) for r in rows}
    assert got == {("http://x/a", "prepare", "missing_media"), ("generic-b.mp3", "prepare", "missing_media"),
                   ("http://x/z", "download", "private")}


def test_ingest_podcasts_end_to_end(ray_session, http_server, media, tmp_path):  # noqa: F811
    from pipelines.config import IngestConfig, SourceSpec
    from pipelines.ingest import run_ingest

    u = _serve(http_server, media)
    listfile = _list_file(tmp_path / "urls.txt", [u["m4a"], u["gone"], u["mp3"], u["page"]])
    cfg = IngestConfig(out=str(tmp_path / "out"), sources_dir=str(tmp_path / "sources"),
                       sources=[SourceSpec("podcasts", {"urls": str(listfile)})], unit_size=4, num_workers=2)
    cfg.filters.dedup.enabled = False  # the m4a and the mp3 carry the same speech: duplicates by design
    res = run_ingest(cfg, progress=False)
    assert res.committed, res
    samples = read_rows(manifest_uri(cfg.out, "samples"), Sample)
    assert samples and {s.kind for s in samples} == {"mono"} and {s.channels for s in samples} == {1}
    assert {s.recording_id for s in samples} == {"generic-talk1", "generic-talk2"}
    assert {s.source for s in samples} == {"podcasts"}
    recs = read_rows(manifest_uri(cfg.out, "recordings"), Recording)
    assert {r.recording_id for r in recs} == {"generic-talk1", "generic-talk2"}
    assert all(r.channels == 1 and r.duration_s and r.duration_s > 1 for r in recs)
    rejects = {r.item: r for r in read_rows(manifest_uri(cfg.out, "rejects"), Reject) if r.stage == "download"}
    assert {k: v.reason for k, v in rejects.items()} == {u["gone"]: "unavailable", u["page"]: "unsupported"}
    assert (Path(cfg.sources_dir) / "podcasts" / "lineage.jsonl").exists()
