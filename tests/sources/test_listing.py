"""Listings lose nothing: every physical line of a CSV/TSV/JSONL manifest or a recipe's transcript file is the
header, a blank line, a recording, or a reject naming that line; unreadable listings stop with one sentence."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from manifests.rows import Recording, Reject
from pipelines.sources import commonvoice, manifest, mucs, slr66
from pipelines.sources.listing import ListingError, read_lines


def _prep(path: Path) -> tuple[list[Recording], list[Reject]]:
    rows = list(manifest.prepare(path))
    return [r for r in rows if isinstance(r, Recording)], [r for r in rows if isinstance(r, Reject)]


def _line(r: Reject) -> int:
    return int(r.item.rsplit(":", 1)[1])


def test_unterminated_quote_loses_only_its_own_line(tmp_path):
    p = tmp_path / "u.csv"
    p.write_text('path,text,speaker,license\na.wav,hi,s1,CC0\n"b.wav,x,s1,CC0\nc.wav,hi,s1,CC0\nd.wav,hi,s1,CC0\n')
    recs, rejects = _prep(p)
    assert sorted(Path(r.uri).name for r in recs) == ["a.wav", "c.wav", "d.wav"]
    assert [(_line(r), r.reason) for r in rejects] == [(3, "bad_line")]
    assert "line 3" in rejects[0].detail and "quote" in rejects[0].detail


def test_quoted_commas_and_field_count_mismatch(tmp_path):
    p = tmp_path / "q.csv"
    p.write_text('path,text,speaker\n"a b.wav","hello, world",s1\nb.wav,one, two,s2\nc.wav,x\n')
    recs, rejects = _prep(p)
    assert [(Path(r.uri).name, r.text) for r in recs] == [("a b.wav", "hello, world")]
    assert [(_line(r), r.reason) for r in rejects] == [(3, "bad_line"), (4, "bad_line")]
    assert "4 comma-separated fields, the header has 3" in rejects[0].detail
    assert "2 comma-separated fields" in rejects[1].detail


def test_bom_crlf_and_real_line_numbers_after_blank_lines(tmp_path):
    p = tmp_path / "b.tsv"
    p.write_bytes("\ufeffpath\ttext\r\n\r\na.wav\tఒకటి\r\n\r\n\r\n\tno path\r\nb.wav\tరెండు\u2028మూడు\r\n".encode())
    recs, rejects = _prep(p)
    assert [(Path(r.uri).name, r.text) for r in recs] == [("a.wav", "ఒకటి"), ("b.wav", "రెండు\u2028మూడు")]
    assert [(r.item, r.reason) for r in rejects] == [("b.tsv:6", "bad_line")]
    assert "line 6" in rejects[0].detail


@pytest.mark.parametrize("content", ["", "\n\n", "path,text,speaker,license\n", "\ufeffpath\ttext\n\n"])
def test_empty_and_header_only_listings_give_no_rows(tmp_path, content):
    p = tmp_path / ("e.tsv" if "\t" in content else "e.csv")
    p.write_text(content, encoding="utf-8")
    assert list(manifest.prepare(p)) == []  # the ingest then refuses it unless --allow-empty (test_empty_output.py)


def test_aliases_are_accepted_when_unambiguous(tmp_path):
    p = tmp_path / "a.csv"  # a tab-separated header in a .csv: the delimiter follows the header
    p.write_text("filename\tsentence\tspk\tlic\nx.wav\tనమస్తే\tamma\tCC-BY-4.0\n", encoding="utf-8")
    (rec,) = list(manifest.prepare(p))
    assert (Path(rec.uri).name, rec.text, rec.speaker_id, rec.license) == ("x.wav", "నమస్తే", "amma", "CC-BY-4.0")
    p.write_text("path,file,text\na.wav,b.wav,x\n")
    with pytest.raises(ListingError, match=r"columns 'path' and 'file' both name the path field"):
        list(manifest.prepare(p))


def test_header_without_path_column_names_found_and_accepted(tmp_path):
    p = tmp_path / "h.tsv"
    p.write_text("name\tsentence\tspk\na.wav\tx\ty\n")
    with pytest.raises(ListingError) as e:
        list(manifest.prepare(p))
    msg = str(e.value)
    assert "h.tsv" in msg and "found 'name', 'sentence', 'spk'" in msg and "accepted names: path, audio" in msg
    assert "looks like data" not in msg


def test_listing_without_header_is_refused_not_shortened(tmp_path):
    p = tmp_path / "n.csv"
    p.write_text("a.wav,hi,s1,CC0\nb.wav,hi,s1,CC0\n")
    with pytest.raises(ListingError, match=r"first line looks like data.*add a header line"):
        list(manifest.prepare(p))


def test_jsonl_lines_that_are_not_objects_are_bad_lines(tmp_path):
    p = tmp_path / "j.jsonl"
    lines = ['{"audio": "a.wav", "transcript": "x"}', "null", "[1, 2]", '"str"', "", "{oops", "42",
             '{"path": ["a.wav"]}', '{"text": "no path"}', '{"file": "b.wav", "speaker_id": 7}']
    p.write_text("\n".join(lines) + "\n")
    recs, rejects = _prep(p)
    assert [(Path(r.uri).name, r.speaker_id) for r in recs] == [("a.wav", ""), ("b.wav", "7")]
    assert [_line(r) for r in rejects] == [2, 3, 4, 6, 7, 8, 9]
    assert all(r.reason == "bad_line" for r in rejects)
    assert "NoneType" in rejects[0].detail and "list" in rejects[1].detail and "str" in rejects[2].detail


def test_latin1_listing_names_file_and_line(tmp_path):
    p = tmp_path / "l.csv"
    p.write_bytes("path,text\na.wav,ok\nb.wav,caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ListingError, match=r"l.csv line 3 is not UTF-8 \(byte 0xe9 at column 10\).*iconv"):
        list(manifest.prepare(p))


def test_read_lines_counts_physical_lines_only(tmp_path):
    p = tmp_path / "x.txt"
    p.write_bytes(  # form feed, file separator, NEL are not line ends
        "a\x0cb\r\nc\x1cd\rlast\u0085".encode())
    assert read_lines(p) == [(1, "a\x0cb"), (2, "c\x1cd"), (3, "last\u0085")]


# -- recipes share the reader ---------------------------------------------------------------------------------
def test_mucs_and_slr66_transcripts_keep_line_numbers_and_refuse_latin1(tmp_path):
    split = tmp_path / "mucs" / "train"
    (split / "audio").mkdir(parents=True)
    for utt in ("u1", "u2"):
        (split / "audio" / f"{utt}.wav").write_bytes(b"RIFF")
    (split / "transcription.txt").write_bytes("u1 ఒకటి\u2028రెండు\n\n\nu3\nu2 మూడు\n".encode())
    rows = list(mucs._split_rows(split, tmp_path / "mucs"))
    bad = [r for r in rows if isinstance(r, Reject)]
    assert [(r.item, r.reason) for r in bad] == [("train/transcription.txt:4", "bad_line")]
    assert sorted(r.recording_id for r in rows if isinstance(r, Recording)) == ["train-u1", "train-u2"]
    (split / "transcription.txt").write_bytes("u1 ok\nu2 caf\xe9\n".encode("latin-1"))
    with pytest.raises(ListingError, match=r"train/transcription.txt line 2 is not UTF-8"):
        list(mucs._split_rows(split, tmp_path / "mucs"))

    root = tmp_path / "slr66" / "te_in_female"
    root.mkdir(parents=True)
    (root / "line_index.tsv").write_bytes(b"\xef\xbb\xbfa_1_1\tok\n\na_1_2\tna\xefve\n")
    with pytest.raises(ListingError, match=r"te_in_female/line_index.tsv line 3 is not UTF-8"):
        list(slr66._zip_rows(root, "te_in_female.zip", tmp_path / "slr66"))


def test_commonvoice_tsv_line_numbers_after_blank_lines(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "a.mp3").write_bytes(b"x")
    tsv = tmp_path / "validated.tsv"
    tsv.write_text("client_id\tpath\tsentence\n\n\nc1\ta.mp3\tనమస్తే\nc2\tb.mp3\n")
    rows = list(commonvoice._tsv_rows(tsv, "validated.tsv", "validated", clips, 0, None))
    assert [r.item for r in rows if isinstance(r, Reject)] == ["validated.tsv:5"]
    assert [r.recording_id for r in rows if isinstance(r, Recording)] == ["a"]


# -- property: random listings account for every physical line ------------------------------------------------
_TEXTS = ["నమస్తే", "hello, world", 'say "hi"', "a\tb", "plain", "", "ఒకటి రెండు", "x\u2028y", "café"]


def _field(value: str, rng: random.Random, delim: str) -> tuple[str, bool]:
    """(encoded field, ok) for one value: CSV fields are quoted at random (and must be when they need it)."""
    if delim == "\t":
        return value, "\t" not in value
    needs = any(c in value for c in ',"')
    if needs or rng.random() < 0.3:
        return '"' + value.replace('"', '""') + '"', True
    return value, True


def _random_listing(rng: random.Random):
    """(bytes, kind, expected) where expected maps line -> ('rec', path, text) | 'reject' | 'blank' | 'header'."""
    kind = rng.choice(["csv", "tsv", "jsonl"])
    delim = "\t" if kind == "tsv" else ","
    lines: list[tuple[str, object]] = []
    if kind != "jsonl":
        names = ["path", "text", "speaker"] if rng.random() < 0.5 else ["audio", "transcript", "spk"]
        lines.append((delim.join(names), "header"))
    used: set[str] = set()
    for i in range(rng.randint(0, 25)):
        r = rng.random()
        text = rng.choice(_TEXTS)
        path = f"clip{i}.wav"
        if r < 0.15:
            lines.append(("", "blank") if rng.random() < 0.5 else ("   ", "blank"))
        elif kind == "jsonl":
            if r < 0.6:
                lines.append((json.dumps({"path": path, "text": text}, ensure_ascii=rng.random() < 0.5),
                              ("rec", path, text.strip())))
            else:
                lines.append((rng.choice(["null", "[1, 2]", '"s"', "{bad", "7", json.dumps({"text": text})]), "reject"))
        elif r < 0.6:
            fp, ok1 = _field(path, rng, delim)
            ft, ok2 = _field(text, rng, delim)
            lines.append((delim.join([fp, ft, "s1"]), ("rec", path, text.strip()) if ok1 and ok2 else "reject"))
        elif r < 0.7:
            lines.append((f'"{path}{delim}{text}{delim}s1', "reject"))  # unterminated quote (a reject in a TSV too)
            if delim == "\t":
                lines[-1] = (f"{path}{delim}{text.replace(delim, ' ')}", "reject")  # TSV: no quoting, a missing field instead
        elif r < 0.8:
            lines.append((delim.join([path, "x", "s1", "extra"]), "reject"))
        else:
            lines.append((delim.join(["", text.replace(delim, " ").replace('"', ""), "s1"]), "reject"))
        used.add(path)
    eol = rng.choice(["\n", "\r\n", "\r"])
    body = eol.join(line for line, _ in lines) + (eol if lines and rng.random() < 0.7 else "")
    data = ("\ufeff" if rng.random() < 0.3 else "") + body
    expected = {n: what for n, (_, what) in enumerate(lines, 1)}
    return data, kind, expected


@pytest.mark.parametrize("seed", range(40))
def test_random_listings_account_for_every_line(tmp_path, seed):
    rng = random.Random(seed)
    data, kind, expected = _random_listing(rng)
    p = tmp_path / f"l.{kind}"
    latin1 = "é" in data and all(ord(c) < 256 for c in data)  # a listing saved as Latin-1 by mistake
    p.write_bytes(data.encode("latin-1" if latin1 else "utf-8"))
    if latin1:
        first = next(n for n, line in enumerate(re.split(r"\r\n|\r|\n", data), 1) if "é" in line)
        with pytest.raises(ListingError, match=rf"l.{kind} line {first} is not UTF-8"):
            list(manifest.prepare(p))
        return
    recs, rejects = _prep(p)
    got: dict[int, object] = {}
    for r in rejects:
        assert _line(r) not in got, r
        got[_line(r)] = "reject"
        assert f"line {_line(r)}" in r.detail or r.reason == "bad_line", r
    by_path = {Path(r.uri).name: r for r in recs}
    for n, what in expected.items():
        if what in ("blank", "header"):
            assert n not in got
        elif what == "reject":
            assert got.get(n) == "reject", (n, data)
        else:
            _, path, text = what
            assert path in by_path and by_path[path].text == text, (n, data)
    assert len(recs) == sum(1 for w in expected.values() if isinstance(w, tuple))
    assert len(rejects) == sum(1 for w in expected.values() if w == "reject")


def test_synthetic_texts_file_reads_like_a_listing(tmp_path):
    from pipelines.sources.synthetic import load_pairs

    p = tmp_path / "t.jsonl"
    p.write_bytes('\ufeff{"q": "ప్రశ్న", "a": 42}\n\n{"q": "x\u2028y", "a": "z"}\n'.encode())
    assert [(x["id"], x["q"], x["a"]) for x in load_pairs(p)] == [("line1", "ప్రశ్న", "42"), ("line3", "x\u2028y", "z")]
    p.write_bytes('{"q": "a", "a": "b"}\n{"q": "caf\u00e9", "a": "b"}\n'.encode("latin-1"))
    with pytest.raises(ListingError, match=r"t.jsonl line 2 is not UTF-8"):
        load_pairs(p)
