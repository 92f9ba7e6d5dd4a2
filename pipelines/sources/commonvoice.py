"""Mozilla Common Voice, Telugu (``te``), CC0-1.0.

Access: Common Voice downloads need an email/sign-in and accepting the terms at
https://commonvoice.mozilla.org/datasets, so the user supplies the release tarball (``archive``: a local path,
an http(s) URL they can fetch, or a folder where they already extracted it). Layout::

    cv-corpus-<ver>-<date>/te/clips/*.mp3
    cv-corpus-<ver>-<date>/te/{validated,invalidated,other,train,dev,test}.tsv

TSV columns (tab-separated, no quoting): client_id, path, sentence, up_votes, down_votes, age, gender, ...
(newer releases add sentence_id, sentence_domain, variant, locale, segment; extra columns are ignored).

Options: ``splits`` (default ``("validated",)``) names the TSVs to read; ``train``/``dev``/``test`` set
``Recording.split`` to that name, ``invalidated``/``other`` to theirs, ``validated`` leaves it empty. A clip
listed by two chosen TSVs is kept once, from the TSV named first. ``min_up_votes`` (default 0) and
``max_down_votes`` (default None: no limit) turn rows outside the bounds into ``Reject(reason="votes")``.
``client_id`` becomes ``speaker_id``; ``gender`` is normalized to male/female/other (or empty).
Malformed rows, clips that are not in ``clips/``, and duplicates become ``Reject`` rows too.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path

from manifests.rows import Recording, Reject
from pipelines.sources.listing import read_lines
from pipelines.sources.manifest import safe_id
from pipelines.sources.usercopy import fetch_user_copy, user_copy_roots

NAME = "commonvoice"
LICENSE = "CC0-1.0"
LANGUAGE = "te"
SPLITS = ("validated", "invalidated", "other", "train", "dev", "test")
REQUIRED_COLUMNS = ("client_id", "path", "sentence")
INFO = {
    "name": NAME,
    "hours": "varies by release (small)",
    "license": LICENSE,
    "access": "login",
    "kind": "mono",
    "description": "Mozilla Common Voice Telugu: crowdsourced read sentences (MP3); tarball from commonvoice.mozilla.org",
}
MISSING_MESSAGE = (
    "the commonvoice source needs the Common Voice release tarball, which you download yourself: Common Voice "
    "asks for an email/sign-in and acceptance of its terms at https://commonvoice.mozilla.org/datasets (pick "
    "Telugu; newer releases may be served from wherever that page points). The file is named like "
    "cv-corpus-<version>-<date>[-te].tar.gz and holds cv-corpus-<version>-<date>/te/clips/*.mp3 and "
    "validated.tsv, train.tsv, dev.tsv, test.tsv. Then run\n"
    "    matalu ingest --source commonvoice --archive PATH\n"
    "(PATH: the tarball, an http(s) URL to it, or the folder you extracted it into; add "
    "--option splits=[train,dev,test] for the official splits instead of validated.tsv)."
)
_GENDERS = {"male": "male", "male_masculine": "male", "m": "male", "female": "female", "female_feminine": "female",
            "f": "female", "": "", "do_not_wish_to_say": "", "prefer_not_to_say": ""}


# -- download -------------------------------------------------------------------------------------------------
def download(target: str | Path, *, archive: str | None = None, mirror: str | None = None,
             sha256: dict[str, str] | None = None, progress: bool = True, **_: object) -> Path:
    """Fetch (when a URL), verify (when pinned with ``sha256``) and extract the user's Common Voice tarball; return
    the folder it lies in (a folder given as ``archive`` is used in place).

    Without ``archive``, a finished earlier download in ``target`` is reused; otherwise MissingArchive says
    what to download and from where. ``mirror`` does not apply (there is no public file to mirror)."""
    archive = str(archive).strip() if archive else ""
    return fetch_user_copy(NAME, target, archive=archive, sha256=sha256, progress=progress, missing=MISSING_MESSAGE,
                           check=lambda root, _archive: locale_dir(root))  # fail now, not at prepare


# -- prepare --------------------------------------------------------------------------------------------------
def locale_dir(root: Path) -> Path:
    """The ``te`` folder of an extracted release (the one holding clips/ and the TSVs)."""
    tsvs = [p for p in sorted(root.rglob("*.tsv")) if p.stem in SPLITS and "__MACOSX" not in p.parts]
    dirs = sorted({p.parent for p in tsvs})
    te = [d for d in dirs if d.name == LANGUAGE]
    if te:
        return te[0]
    if len(dirs) == 1 and (dirs[0] / "clips").is_dir():
        return dirs[0]
    raise FileNotFoundError(f"no Common Voice Telugu folder (te/ with clips/ and validated.tsv) under {root}: "
                            "is this a Common Voice release tarball that includes Telugu?")


def _splits(splits: Iterable[str] | str) -> list[str]:
    items = [splits] if isinstance(splits, str) else list(splits)
    out: list[str] = []
    for s in items:
        s = str(s).strip().lower().removesuffix(".tsv")
        if s not in SPLITS:
            raise ValueError(f"commonvoice: unknown split {s!r}; choose from {', '.join(SPLITS)}")
        if s not in out:
            out.append(s)
    if not out:
        raise ValueError(f"commonvoice: splits is empty; choose from {', '.join(SPLITS)}")
    return out


def _gender(value: str) -> str:
    v = value.strip().lower()
    return _GENDERS.get(v, "other")


def _votes(value: str | None) -> int:
    v = (value or "").strip()
    return int(v) if v else 0


def _tsv_rows(tsv: Path, rel: str, split: str, clips: Path, min_up: int,
              max_down: int | None) -> Iterator[Recording | Reject]:
    lines = [(n, line) for n, line in read_lines(tsv, rel) if line.strip()]
    fieldnames = lines[0][1].split("\t") if lines else []
    missing = [c for c in REQUIRED_COLUMNS if c not in fieldnames]
    if missing:
        raise ValueError(f"{rel}: not a Common Voice TSV (no {', '.join(missing)} column; header is "
                         f"{fieldnames})")
    width = len(fieldnames)
    for n, line in lines[1:]:
        # one physical line, one record (QUOTE_NONE: a quote is text)
        item = f"{rel}:{n}"
        values = line.split("\t")
        if len(values) != width:
            yield Reject(item=item, stage="prepare", reason="bad_line", source=NAME,
                         detail=f"{rel} line {n}: {len(values)} tab-separated fields, the header has {width}")
            continue
        row = dict(zip(fieldnames, values))
        path = row["path"].strip()
        text = unicodedata.normalize("NFC", row["sentence"].strip())
        if not path or not text:
            yield Reject(item=item, stage="prepare", reason="bad_line", source=NAME,
                         detail=f"{rel} line {n}: empty {'path' if not path else 'sentence'}")
            continue
        if "/" in path or "\\" in path or path in (".", ".."):
            yield Reject(item=item, stage="prepare", reason="bad_line", source=NAME,
                         detail=f"{rel} line {n}: path {path!r} is not a file name in clips/")
            continue
        rid = safe_id(Path(path).stem if path.lower().endswith((".mp3", ".wav", ".ogg")) else path)
        try:
            up, down = _votes(row.get("up_votes")), _votes(row.get("down_votes"))
        except ValueError:
            yield Reject(item=item, stage="prepare", reason="bad_line", source=NAME, recording_id=rid,
                         detail=f"{rel} line {n}: up_votes/down_votes are not integers "
                                f"({row.get('up_votes')!r}, {row.get('down_votes')!r})")
            continue
        if up < min_up or (max_down is not None and down > max_down):
            why = [f"up_votes={up} < min_up_votes={min_up}"] if up < min_up else []
            if max_down is not None and down > max_down:
                why.append(f"down_votes={down} > max_down_votes={max_down}")
            yield Reject(item=rid, stage="prepare", reason="votes", source=NAME, recording_id=rid,
                         detail=f"{rel} line {n}: {'; '.join(why)}")
            continue
        clip = clips / path
        if not clip.is_file():
            yield Reject(item=rid, stage="prepare", reason="missing_audio", source=NAME, recording_id=rid,
                         detail=f"{rel} line {n} lists clips/{path}, which is not in the archive")
            continue
        yield Recording(recording_id=rid, source=NAME, uri=str(clip.resolve()), member="",
                        speaker_id=row["client_id"].strip(), gender=_gender(row.get("gender") or ""),
                        text=text, language=LANGUAGE, license=LICENSE,
                        split="" if split == "validated" else split)


def prepare(downloaded: str | Path, *, splits: Iterable[str] | str = ("validated",), min_up_votes: int = 0,
            max_down_votes: int | None = None, **_: object) -> Iterator[Recording | Reject]:
    """Recordings (sorted by id) and prepare-stage rejects of the chosen TSVs of a Common Voice download."""
    target = Path(downloaded)
    if not target.exists():
        raise FileNotFoundError(f"{target} holds no finished Common Voice download; run download() with the "
                                "tarball first (`matalu sources download commonvoice --to DIR --archive PATH`)")
    te = locale_dir((user_copy_roots(target) or [target])[0])
    min_up = int(min_up_votes or 0)
    max_down = None if max_down_votes is None else int(max_down_votes)
    recordings: dict[str, Recording] = {}
    first_seen: dict[str, str] = {}
    rejects: list[Reject] = []
    for split in _splits(splits):
        tsv = te / f"{split}.tsv"
        if not tsv.is_file():
            have = ", ".join(sorted(p.name for p in te.glob("*.tsv"))) or "none"
            raise FileNotFoundError(f"commonvoice: {tsv} is not in this release (TSVs here: {have}); "
                                    "choose other splits")
        rel = f"{te.name}/{tsv.name}"
        for row in _tsv_rows(tsv, rel, split, te / "clips", min_up, max_down):
            rid = row.recording_id
            decided = isinstance(row, Recording) or row.reason in ("votes", "missing_audio")
            if rid and rid in first_seen and decided:
                rejects.append(Reject(item=rid, stage="prepare", reason="duplicate_id", source=NAME,
                                      recording_id=rid,
                                      detail=f"{rel} lists {rid} again (first in {first_seen[rid]}); "
                                             "the first is kept"))
                continue
            if isinstance(row, Reject):
                rejects.append(row)
                if row.reason in ("votes", "missing_audio"):
                    first_seen.setdefault(rid, rel)
                continue
            first_seen[rid] = rel
            recordings[rid] = row
    yield from rejects
    for rid in sorted(recordings):
        yield recordings[rid]
