"""Ingestion configuration: one dataclass per component, loaded from YAML, dumped as JSON beside the output."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.stages.diarize import DiarizeConfig
from pipelines.stages.measures import MeasureConfig
from pipelines.stages.quality import FilterConfig
from pipelines.stages.segment import SegmentConfig
from pipelines.stages.vad import VadConfig
from storage import StorageOptions

PIPELINE_VERSION = 7  # bump when stage code changes what a unit produces; committed units are then redone


@dataclass
class SourceSpec:
    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DiarizationConfig:
    """Diarization inside ingestion (docs/DESIGN.md §7).

    Recordings of ``sources`` that have no turns (mono podcasts) are diarized; speaker turns become exchanges and
    roles, and the mono mix is cut into 2-channel dialog windows. Recordings of ``report_der_sources`` keep their
    true turns, and their mix is diarized too, so every run reports DER (``manifests/diarization.parquet``)."""

    sources: list[str] = field(default_factory=lambda: ["podcasts"])
    report_der_sources: list[str] = field(default_factory=lambda: ["synthetic"])
    merge_gap_s: float = 0.5  # same-speaker gaps shorter than this merge into one turn
    max_response_gap_s: float = 2.0  # an answer must start within this of the question's end
    system: str = "more"  # which speaker is the system: more | less | first | second
    model: DiarizeConfig = field(default_factory=DiarizeConfig)


@dataclass
class ShardConfig:
    max_bytes: int = 256 * 1024 * 1024
    max_samples: int = 1000
    flac_compression: float = 0.0  # libsndfile 0..1 = FLAC levels 0..8; 0 is fastest, speech shards ~same size


@dataclass
class IngestConfig:
    out: str = "data/out"
    sources: list[SourceSpec] = field(default_factory=lambda: [SourceSpec("synthetic")])
    sources_dir: str = "data/sources"  # where recipes download/extract/synthesize (a shared path on clusters)
    address: str | None = None  # None: RAY_ADDRESS or a new local Ray; "auto"; "ray://host:10001"
    num_workers: int | None = None  # unit-processing actors; default: one per CPU in the cluster
    num_cpus: int | None = None  # CPUs for a local Ray started by this job
    unit_size: int = 8  # recordings per work unit
    # A unit decodes and VAD-s its recordings in groups of at most this much audio (a longer recording goes alone),
    # so its peak memory is bounded by this plus its longest recording, not by its total hours. Not part of the
    # processing fingerprint: it can change VAD probabilities only by float rounding (~1e-7).
    vad_batch_max_s: float = 1800.0
    sample_rate: int = 16000
    vad: VadConfig = field(default_factory=VadConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
    measures: MeasureConfig = field(default_factory=MeasureConfig)  # DNSMOS, bandwidth, loudness (+ normalisation)
    shards: ShardConfig = field(default_factory=ShardConfig)
    storage: StorageOptions = field(default_factory=StorageOptions)
    diarization: DiarizationConfig = field(default_factory=DiarizationConfig)
    exclude_licenses: list[str] = field(default_factory=list)  # globs, e.g. ["CC-BY-NC*"]: rejected while preparing
    allow_empty: bool = False  # commit a run whose sources give no recordings / no samples (else it fails)

    def validate(self) -> None:
        if self.sample_rate != 16000:
            raise ValueError("sample_rate must be 16000: Silero VAD and the codec work at 16 kHz")
        if self.unit_size < 1:
            raise ValueError("unit_size must be at least 1")
        if self.vad_batch_max_s <= 0:
            raise ValueError("vad_batch_max_s must be positive (seconds of audio a unit holds at once)")
        if not self.sources:
            raise ValueError("no sources configured")
        self.segment.validate()
        self.filters.lid.validate()
        self.measures.validate(self.filters)
        self.diarization.model.validate()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)

    def processing_fingerprint(self) -> str:
        """What a unit's output depends on besides its recordings."""
        d = {k: v for k, v in self.to_dict().items() if k in ("sample_rate", "vad", "segment", "filters", "shards", "diarization",
                                                          "measures")}
        d["pipeline_version"] = PIPELINE_VERSION
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def _build(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(names))}")
        return tp(**{k: _build(hints[k], v, f"{where}.{k}") for k, v in value.items()})
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        return [_build(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        return tuple(value)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _build(args[0], value, where) if len(args) == 1 else value
    if tp is float and isinstance(value, int):
        return float(value)
    return value


def config_from_dict(d: dict) -> IngestConfig:
    d = dict(d)
    if "sources" in d:
        d["sources"] = [{"name": s} if isinstance(s, str) else s for s in d["sources"]]
    cfg = _build(IngestConfig, d, "config")
    cfg.validate()
    return cfg


def load_config(path: str | Path | None) -> IngestConfig:
    if path is None:
        return IngestConfig()
    import yaml

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"config file {p} does not exist")
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{p}: the config must be a YAML mapping")
    return config_from_dict(data)
