"""Export a run's samples for other tools: ``export(uri, out, fmt)`` with ``fmt`` in ``hf`` | ``lhotse`` | ``moshi``.

``moshi`` (moshi-finetune's stereo WAVs + ``data.jsonl``, dialogs only) is :func:`manifests.export_moshi.export_moshi`.

* ``hf``: a Hugging Face ``datasets.Dataset`` written with ``save_to_disk(out)``. Column ``audio`` is
  ``datasets.Audio(num_channels=None)`` holding each sample's FLAC bytes as stored in its shard (so a dialog stays
  2-channel: ch0 system, ch1 user; without ``num_channels=None`` datasets would down-mix it to mono), plus the
  sample's fields (``sample_id``, ``kind``, ``source``, ``recording_id``, ``start_s``, ``end_s``, ``duration_s``,
  ``channels``, ``sample_rate``, ``speakers``, ``turns``, ``text``, ``license``, ``sha256``, ``snr_db``,
  ``speech_ratio``, ``clipping``, ``split``). Load with ``datasets.load_from_disk(out)``.
* ``lhotse`` (needs the ``lhotse`` extra: ``pip install 'matalu[lhotse]'``): ``out/audio/<sample_id>.wav`` (16-bit PCM, the sample's channels) and ``recordings.jsonl.gz``,
  ``supervisions.jsonl.gz``, ``cuts.jsonl.gz`` that point at those files by absolute path. A mono sample has one
  supervision (its text and speaker); a dialog has one supervision per turn on its channel (system on 0, user on
  1) with ``custom={"role": ...}``; its cut is a ``MultiCut`` over both channels. Load with
  ``lhotse.CutSet.from_file(out/"cuts.jsonl.gz")`` or ``lhotse.load_manifest``.

Samples are read shard by shard (each shard once); each FLAC's sha256 is checked against the manifest.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

import storage
from manifests.io import MANIFEST_DIR, read_table
from manifests.licenses import license_filter
from manifests.overview import resolve_shard, run_dir
from manifests.rows import Sample

FORMATS = ("hf", "lhotse")
FIELDS = ("sample_id", "kind", "source", "recording_id", "start_s", "end_s", "duration_s", "channels", "sample_rate",
          "speakers", "turns", "text", "license", "sha256", "snr_db", "speech_ratio", "clipping", "split")
LANGUAGE = "te"


@dataclass
class ExportResult:
    fmt: str
    out: str
    n_samples: int
    seconds: float
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"fmt": self.fmt, "out": self.out, "n_samples": self.n_samples, "seconds": self.seconds,
                "hours": self.seconds / 3600, "files": self.files}


def select_samples(uri: str, *, kind: str | None = None, split: str | None = None, source: str | None = None,
                   exclude_licenses: Iterable[str] = (), limit: int | None = None) -> pa.Table:
    """The samples table filtered by kind / split / source / licence, in manifest order, at most ``limit`` rows."""
    u = str(uri).rstrip("/")
    samples_uri = u if u.endswith(".parquet") else storage.join(run_dir(u), MANIFEST_DIR, "samples.parquet")
    t = read_table(samples_uri, Sample)
    for col, v in (("kind", kind), ("split", split), ("source", source)):
        if v:
            t = t.filter(pc.equal(t.column(col), v))
    t = license_filter(list(exclude_licenses)).filter_table(t)
    if limit is not None:
        t = t.slice(0, max(0, int(limit)))
    return t


def iter_audio(table: pa.Table, base: str) -> Iterator[tuple[dict, bytes]]:
    """(row, FLAC bytes) for each row of ``table``, reading each shard once, in shard order of first appearance.

    Raises ``ValueError`` if a FLAC's sha256 differs from the manifest's and ``KeyError`` if a sample is missing
    from its shard."""
    rows = table.to_pylist()
    by_shard: dict[str, list[dict]] = {}
    for r in rows:
        by_shard.setdefault(r["shard"], []).append(r)
    for shard, members in by_shard.items():
        want = {r["sample_id"]: r for r in members}
        found = set()
        for key, m in storage.iter_shard(resolve_shard(shard, base)):
            r = want.get(key)
            if r is None:
                continue
            flac = m.get("flac")
            if flac is None:
                raise KeyError(f"sample {key} in {shard} has no .flac member (a token shard?)")
            if r.get("sha256") and storage.sha256_bytes(flac) != r["sha256"]:
                raise ValueError(f"sample {key} in {shard}: audio sha256 differs from the manifest (corrupt shard?)")
            found.add(key)
            yield r, flac
        missing = sorted(set(want) - found)
        if missing:
            raise KeyError(f"{len(missing)} sample(s) listed in the manifest are missing from {shard}: {missing[:3]}")


# -- Hugging Face -------------------------------------------------------------------------------------------------
def hf_features():
    from datasets import Audio, Features, List, Value

    turn = {"role": Value("string"), "speaker": Value("string"), "start_s": Value("float64"),
            "end_s": Value("float64"), "text": Value("string")}
    return Features({
        "audio": Audio(num_channels=None),  # keep both channels of a dialog (datasets down-mixes otherwise)
        "sample_id": Value("string"), "kind": Value("string"), "source": Value("string"),
        "recording_id": Value("string"), "start_s": Value("float64"), "end_s": Value("float64"),
        "duration_s": Value("float64"), "channels": Value("int32"), "sample_rate": Value("int32"),
        "speakers": List(Value("string")), "turns": List(turn), "text": Value("string"),
        "license": Value("string"), "sha256": Value("string"), "snr_db": Value("float64"),
        "speech_ratio": Value("float64"), "clipping": Value("float64"), "split": Value("string"),
    })


def _hf_rows(uri: str, base: str, filters: dict) -> Iterator[dict]:
    table = select_samples(uri, **filters)
    for r, flac in iter_audio(table, base):
        d = {k: r.get(k) for k in FIELDS}
        d["speakers"] = list(d["speakers"] or [])
        d["turns"] = [dict(t) for t in (d["turns"] or [])]
        d["audio"] = {"bytes": flac, "path": f"{r['sample_id']}.flac"}
        yield d


def export_hf(uri: str, out: str | Path, *, batch_rows: int = 256, **filters) -> ExportResult:
    """Rows go straight into an Arrow stream file with the dataset's schema (the FLAC bytes are already what
    ``datasets.Audio`` stores, so nothing is re-encoded and torch is not needed to write), which
    ``Dataset.from_file`` memory-maps and ``save_to_disk`` copies into ``out``."""
    from datasets import Dataset, DatasetInfo

    out = Path(out)
    feats = hf_features()
    schema = feats.arrow_schema
    n, seconds = 0, 0.0
    with tempfile.TemporaryDirectory(prefix="matalu-hf-") as tmp:
        path = str(Path(tmp) / "data.arrow")
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, schema) as w:
            batch: list[dict] = []
            for row in _hf_rows(str(uri), run_dir(uri), filters):
                batch.append(row)
                n += 1
                seconds += float(row["duration_s"] or 0.0)
                if len(batch) >= batch_rows:
                    w.write_table(pa.Table.from_pylist(batch, schema=schema))
                    batch = []
            if batch:
                w.write_table(pa.Table.from_pylist(batch, schema=schema))
        ds = Dataset.from_file(path, info=DatasetInfo(features=feats, description=f"matalu samples from {uri}"))
        ds.save_to_disk(str(out))
        del ds
    return ExportResult("hf", str(out), n, seconds, {"dataset": str(out)})


# -- Lhotse -------------------------------------------------------------------------------------------------------
def _lhotse_items(r: dict, wav: Path, num_samples: int, sr: int, channels: int):
    from lhotse import MonoCut, MultiCut, Recording, SupervisionSegment
    from lhotse.audio import AudioSource

    sid = r["sample_id"]
    dur = num_samples / sr
    rec = Recording(id=sid, sources=[AudioSource(type="file", channels=list(range(channels)), source=str(wav))],
                    sampling_rate=sr, num_samples=num_samples, duration=dur, channel_ids=list(range(channels)))
    meta = {"source": r["source"], "kind": r["kind"], "license": r["license"], "source_recording_id": r["recording_id"],
            "source_start_s": r["start_s"], "snr_db": r["snr_db"], "speech_ratio": r["speech_ratio"], "split": r["split"]}
    sups = []
    speakers = list(r["speakers"] or [])
    if r["kind"] == "dialog" and channels >= 2:
        for i, t in enumerate(r["turns"] or []):
            start = max(0.0, float(t["start_s"]))
            end = min(dur, float(t["end_s"]))
            if end - start <= 0:
                continue
            ch = 0 if t["role"] == "system" else 1 if t["role"] == "user" else [0, 1]
            sups.append(SupervisionSegment(id=f"{sid}-{i:03d}", recording_id=sid, start=round(start, 6),
                                           duration=round(end - start, 6), channel=ch, text=t["text"] or "",
                                           language=LANGUAGE, speaker=t["speaker"] or None,
                                           custom={"role": t["role"] or ""}))
        cut = MultiCut(id=sid, start=0.0, duration=dur, channel=list(range(channels)), supervisions=sups,
                       recording=rec, custom=meta)
    else:
        sups.append(SupervisionSegment(id=sid, recording_id=sid, start=0.0, duration=dur, channel=0,
                                       text=r["text"] or "", language=LANGUAGE,
                                       speaker=speakers[0] if speakers else None,
                                       custom={k: meta[k] for k in ("source", "license", "kind")}))
        cut = MonoCut(id=sid, start=0.0, duration=dur, channel=0, supervisions=sups, recording=rec, custom=meta)
    return rec, sups, cut


LHOTSE_MISSING = "the lhotse export needs the lhotse package: pip install 'matalu[lhotse]'"


def export_lhotse(uri: str, out: str | Path, **filters) -> ExportResult:
    import soundfile as sf

    try:
        from lhotse import CutSet, RecordingSet, SupervisionSet
    except ImportError as e:
        raise ValueError(f"{LHOTSE_MISSING} ({e})") from e

    out = Path(out).resolve()
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    files = {"recordings": str(out / "recordings.jsonl.gz"), "supervisions": str(out / "supervisions.jsonl.gz"),
             "cuts": str(out / "cuts.jsonl.gz"), "audio": str(audio_dir)}
    n, seconds = 0, 0.0
    table = select_samples(uri, **filters)
    with RecordingSet.open_writer(files["recordings"]) as rw, SupervisionSet.open_writer(files["supervisions"]) as sw, \
            CutSet.open_writer(files["cuts"]) as cw:
        for r, flac in iter_audio(table, run_dir(uri)):
            data, sr = sf.read(io.BytesIO(flac), dtype="int16", always_2d=True)
            wav = audio_dir / f"{r['sample_id']}.wav"
            tmp = wav.with_name(f".{wav.name}.tmp")
            sf.write(tmp, data, sr, format="WAV", subtype="PCM_16")
            tmp.replace(wav)
            rec, sups, cut = _lhotse_items(r, wav, data.shape[0], sr, data.shape[1])
            rw.write(rec)
            for s in sups:
                sw.write(s)
            cw.write(cut)
            n += 1
            seconds += rec.duration
    (out / "export.json").write_text(json.dumps({"uri": str(uri), "format": "lhotse", "samples": n, "seconds": seconds,
                                                 "filters": filters}, indent=2, ensure_ascii=False) + "\n")
    return ExportResult("lhotse", str(out), n, seconds, files)


def export(uri: str, out: str | Path, fmt: str, **filters) -> ExportResult:
    """Export ``uri``'s samples to ``out`` (a local directory) as ``fmt`` (``hf`` | ``lhotse`` | ``moshi``).

    ``filters``: ``kind``, ``split``, ``source`` (exact values), ``exclude_licenses`` (patterns, see
    :func:`manifests.licenses.license_filter`), ``limit`` (first N samples in manifest order)."""
    unknown = set(filters) - {"kind", "split", "source", "exclude_licenses", "limit"}
    if unknown:
        raise ValueError(f"unknown export option(s): {', '.join(sorted(unknown))}")
    if not storage.is_local(str(out)):
        raise ValueError(f"export writes a local directory; got {out}")
    if fmt == "hf":
        return export_hf(uri, out, **filters)
    if fmt == "lhotse":
        return export_lhotse(uri, out, **filters)
    if fmt == "moshi":
        return _export_moshi(uri, out, **filters)
    raise ValueError(f"unknown export format {fmt!r}: expected one of {', '.join(FORMATS + ('moshi',))}")


def _export_moshi(uri: str, out: str | Path, **filters) -> ExportResult:
    """moshi-finetune's layout via :func:`manifests.export_moshi.export_moshi` (all dialog samples; no filters)."""
    if any(v not in (None, "", [], ()) for v in filters.values()):
        raise ValueError("the moshi export takes every dialog sample: --kind/--split/--source/--exclude-license/"
                         "--limit do not apply")
    from manifests.export_moshi import export_moshi

    jsonl = Path(export_moshi(str(uri), out))
    lines = [json.loads(x) for x in jsonl.read_text().splitlines() if x.strip()]
    return ExportResult("moshi", str(out), len(lines), float(sum(x.get("duration", 0.0) for x in lines)),
                        {"jsonl": str(jsonl)})
