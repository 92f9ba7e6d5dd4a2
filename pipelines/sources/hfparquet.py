"""Reading Hugging Face parquet mirrors (IndicTTS, Kathbath, IndicVoices) from local files only.

The audio stays in the parquet files: a recipe emits ``member = "parquet:<row>:<audio column>"`` and the ingestion
reads that row's bytes (``pipelines/stages/read.py``). Here only the small columns are read (never the audio
bytes), so preparing a multi-GB mirror is quick. ``ClassLabel`` columns (stored as integers) are decoded with the
names the ``datasets`` library writes into the file's ``huggingface`` schema metadata.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_SPLIT_RE = re.compile(r"^(train|valid|validation|dev|test(?:_known|_unknown)?|test)(?:[-_.]|$)", re.IGNORECASE)
_SPLIT_DIRS = {"train", "valid", "validation", "dev", "test", "test_known", "test_unknown"}


def parquet_files(root: str | Path, language: str | None = None) -> list[Path]:
    """Parquet files of a mirror: ``root`` itself when it is one, else ``data/*.parquet`` or any ``*.parquet``
    under ``root`` (sorted). With ``language`` (e.g. ``"telugu"``) and files in per-language folders, only those
    under a folder of that name are kept."""
    root = Path(root)
    if root.is_file():
        return [root]
    files = sorted(p for p in root.rglob("*.parquet") if p.is_file() and not p.name.startswith("."))
    if language:
        lang = language.lower()
        mine = [p for p in files if lang in (part.lower() for part in p.relative_to(root).parts[:-1])]
        if mine:
            files = mine
    return files


def split_of(path: Path, root: Path | None = None) -> str:
    """``train``/``valid``/``test...`` from a HF shard name (``train-00000-of-00004.parquet``) or its folder."""
    m = _SPLIT_RE.match(path.name)
    if m:
        s = m.group(1).lower()
        return "valid" if s in ("validation", "dev") else s
    if root is not None and Path(root) in path.parents:
        parts = path.relative_to(root).parts[:-1]
    else:
        parts = path.parent.parts[-2:]
    for part in reversed(parts):
        if part.lower() in _SPLIT_DIRS:
            return "valid" if part.lower() in ("validation", "dev") else part.lower()
    return "train"


def find_column(names: Sequence[str], aliases: Sequence[str]) -> str | None:
    """The first of ``aliases`` (case-insensitive) that is a column name."""
    lower = {n.lower(): n for n in names}
    for a in aliases:
        if a.lower() in lower:
            return lower[a.lower()]
    return None


@dataclass
class ParquetMeta:
    """The non-audio columns of one parquet file, as Python rows, and its audio column."""

    path: Path
    num_rows: int
    audio_column: str
    rows: list[dict] = field(default_factory=list)
    audio_paths: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return list(self.rows[0]) if self.rows else []


def _is_audio_type(t) -> bool:
    import pyarrow as pa

    if pa.types.is_struct(t):
        return t.get_field_index("bytes") >= 0
    return pa.types.is_binary(t) or pa.types.is_large_binary(t)


def _class_labels(schema) -> dict[str, list[str]]:
    meta = (schema.metadata or {}).get(b"huggingface")
    if not meta:
        return {}
    try:
        feats = json.loads(meta).get("info", {}).get("features", {})
    except (ValueError, AttributeError):
        return {}
    out = {}
    if isinstance(feats, dict):
        for name, f in feats.items():
            if isinstance(f, dict) and f.get("_type") == "ClassLabel" and isinstance(f.get("names"), list):
                out[name] = [str(n) for n in f["names"]]
    return out


def read_meta(path: Path, audio_aliases: Sequence[str] = ("audio", "audio_filepath", "audio_file")) -> ParquetMeta:
    """Read everything but the audio bytes of ``path``; ``ValueError`` when it has no audio column."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(str(path))
    schema = pf.schema_arrow
    audio_cols = [f.name for f in schema if _is_audio_type(f.type)]
    if not audio_cols:
        raise ValueError(f"{path} has no audio column (a struct with 'bytes', or binary); columns: {', '.join(schema.names)}")
    audio = find_column(audio_cols, audio_aliases) or audio_cols[0]
    others = [n for n in schema.names if n not in audio_cols]
    rows = pq.read_table(str(path), columns=others).to_pylist() if others else [{} for _ in range(pf.metadata.num_rows)]
    labels = _class_labels(schema)
    for col, names in labels.items():
        if col in others:
            for r in rows:
                v = r.get(col)
                if isinstance(v, int) and 0 <= v < len(names):
                    r[col] = names[v]
    paths: list[str] = [""] * pf.metadata.num_rows
    t = schema.field(audio).type
    import pyarrow as pa

    if pa.types.is_struct(t) and t.get_field_index("path") >= 0:
        paths = [p or "" for p in pq.read_table(str(path), columns=[f"{audio}.path"]).column(0).to_pylist()]
    return ParquetMeta(path=path, num_rows=pf.metadata.num_rows, audio_column=audio, rows=rows, audio_paths=paths)


def text_of(row: dict, aliases: Sequence[str]) -> str:
    col = find_column(list(row), aliases)
    v = row.get(col) if col else None
    return "" if v is None else str(v).strip()


def gender_of(value: object) -> str:
    """``male``/``female`` from the spellings corpora use (m, f, Male, FEMALE, 1/0 are not guessed)."""
    s = str(value or "").strip().lower()
    if s in ("m", "male", "man", "boy"):
        return "male"
    if s in ("f", "female", "woman", "girl"):
        return "female"
    return s if s in ("other", "transgender", "non-binary") else ""


def row_id(file_stem: str, row: int, name: str = "") -> str:
    """``<file>-<row>[-<name stem>]``: unique, and sorting by it keeps one parquet file's rows together, so a
    work unit (a run of recordings sorted by id) reads few parquet files."""
    from pipelines.sources.manifest import safe_id

    stem = safe_id(Path(name).stem) if name else ""
    return safe_id(f"{file_stem}-{row:06d}" + (f"-{stem}" if stem and stem != "rec" else ""))


def rows_of(root: Path, language: str | None, missing: str) -> Iterator[tuple[Path, ParquetMeta, str, str, int, dict]]:
    """Every row of the parquet files under ``root``: ``(file, meta, file stem for ids, split from the path, row
    index, row)``. With ``language``, rows whose ``lang``/``language`` column names another language are skipped (a
    multi-language copy); no parquet files raise ``FileNotFoundError(missing)``."""
    from pipelines.sources.manifest import safe_id

    files = parquet_files(root, language)
    if not files:
        raise FileNotFoundError(missing)
    base = root if root.is_dir() else root.parent
    for f in files:
        meta = read_meta(f)
        fstem = safe_id(f.relative_to(base).with_suffix("").as_posix())
        split = split_of(f, base)
        for i, row in enumerate(meta.rows):
            if language:
                lang = text_of(row, ("lang", "language")).lower()
                if lang and lang not in (language.lower(), "te", "tel"):
                    continue  # another language's row in a multi-language copy
            yield f, meta, fstem, split, i, row
