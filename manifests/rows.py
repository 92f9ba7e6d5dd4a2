"""Typed manifest rows (docs/DESIGN.md §3) with explicit Parquet schemas.

Every row kind is a dataclass with ``to_dict`` and a tolerant ``from_dict`` (unknown keys are ignored and missing
optional keys take their defaults), so manifests written by older versions stay readable.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import pyarrow as pa

T = TypeVar("T", bound="Row")

TURN_TYPE = pa.struct(
    [
        ("role", pa.string()),
        ("speaker", pa.string()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("text", pa.string()),
    ]
)


@dataclass
class Turn:
    """One speaker turn inside a sample or recording; times in seconds from the sample/recording start."""

    role: str  # "user" | "system" | "" (unknown)
    speaker: str
    start_s: float
    end_s: float
    text: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Turn":
        return cls(
            role=d.get("role") or "",
            speaker=d.get("speaker") or "",
            start_s=float(d["start_s"]),
            end_s=float(d["end_s"]),
            text=d.get("text") or "",
        )


class Row:
    SCHEMA: ClassVar[pa.Schema]
    TABLE: ClassVar[str]

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if f.name == "turns":
                v = [t.to_dict() if isinstance(t, Turn) else dict(t) for t in v]
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls: type[T], d: dict[str, Any]) -> T:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        kwargs = {k: v for k, v in d.items() if k in names}
        if "turns" in kwargs and kwargs["turns"] is not None:
            kwargs["turns"] = [t if isinstance(t, Turn) else Turn.from_dict(t) for t in kwargs["turns"]]
        if "speakers" in kwargs and kwargs["speakers"] is not None:
            kwargs["speakers"] = list(kwargs["speakers"])
        for k in [k for k, v in kwargs.items() if v is None]:
            f = next(f for f in dataclasses.fields(cls) if f.name == k)  # type: ignore[arg-type]
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                del kwargs[k]
        return cls(**kwargs)


@dataclass
class Recording(Row):
    """One input audio file (or archive member) with what its corpus says about it."""

    TABLE: ClassVar[str] = "recordings"
    recording_id: str
    source: str
    uri: str  # local path, s3:// or http(s):// URL
    member: str = ""  # path inside an archive, when the audio lives in one
    sha256: str = ""
    duration_s: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    speaker_id: str = ""
    gender: str = ""
    text: str = ""
    language: str = "te"
    license: str = ""
    split: str = ""
    # Known speaker turns (synthetic dialogs, IndicVoices); channel_roles names the role on each channel when
    # the recording keeps speakers on separate channels (e.g. ["system", "user"]).
    turns: list[Turn] = field(default_factory=list)
    channel_roles: list[str] = field(default_factory=list)
    # Corpus-specific lineage as a JSON object (podcast channel/upload date, Common Voice votes, ...).
    extra: str = ""

    SCHEMA: ClassVar[pa.Schema] = pa.schema(
        [
            ("recording_id", pa.string()),
            ("source", pa.string()),
            ("uri", pa.string()),
            ("member", pa.string()),
            ("sha256", pa.string()),
            ("duration_s", pa.float64()),
            ("sample_rate", pa.int32()),
            ("channels", pa.int32()),
            ("speaker_id", pa.string()),
            ("gender", pa.string()),
            ("text", pa.string()),
            ("language", pa.string()),
            ("license", pa.string()),
            ("split", pa.string()),
            ("turns", pa.list_(TURN_TYPE)),
            ("channel_roles", pa.list_(pa.string())),
            ("extra", pa.string()),
        ]
    )


@dataclass
class Sample(Row):
    """One sample in a shard: a ``mono`` utterance or a 2-channel ``dialog`` window (ch0 system, ch1 user)."""

    TABLE: ClassVar[str] = "samples"
    sample_id: str
    kind: str  # "mono" | "dialog"
    shard: str
    source: str
    recording_id: str
    start_s: float
    end_s: float
    duration_s: float
    channels: int
    sample_rate: int = 16000
    speakers: list[str] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    text: str = ""
    license: str = ""
    sha256: str = ""  # of the audio member's bytes (the .flac)
    snr_db: float | None = None
    speech_ratio: float | None = None
    clipping: float | None = None
    codec_id: str = ""
    split: str = ""
    # the sample's members (tar headers + data) in its shard: bytes [tar_offset, tar_offset + tar_bytes); lets a
    # reader fetch one sample with one ranged read (storage.read_sample_at). NULL in manifests written before.
    tar_offset: int | None = None
    tar_bytes: int | None = None
    # language ID (pipelines/stages/lid.py): ISO 639-1 code and the identifier's probability; ""/NULL when not judged
    language: str = ""
    lid_score: float | None = None
    # quality measures (pipelines/stages/measures.py); NULL when the measure did not run
    dnsmos_sig: float | None = None  # DNSMOS P.835 speech signal, 1..5
    dnsmos_bak: float | None = None  # background
    dnsmos_ovrl: float | None = None  # overall
    bandwidth_hz: float | None = None  # effective bandwidth of the 16 kHz audio (at most 8000)
    loudness_lufs: float | None = None  # ITU-R BS.1770 integrated loudness before any normalisation
    loudness_normalized_to: float | None = None  # the target LUFS when the written audio was normalised, else NULL
    loudness_gain_db: float | None = None  # the gain applied then (lower than target - loudness if the peak capped it)

    SCHEMA: ClassVar[pa.Schema] = pa.schema(
        [
            ("sample_id", pa.string()),
            ("kind", pa.string()),
            ("shard", pa.string()),
            ("source", pa.string()),
            ("recording_id", pa.string()),
            ("start_s", pa.float64()),
            ("end_s", pa.float64()),
            ("duration_s", pa.float64()),
            ("channels", pa.int32()),
            ("sample_rate", pa.int32()),
            ("speakers", pa.list_(pa.string())),
            ("turns", pa.list_(TURN_TYPE)),
            ("text", pa.string()),
            ("license", pa.string()),
            ("sha256", pa.string()),
            ("snr_db", pa.float64()),
            ("speech_ratio", pa.float64()),
            ("clipping", pa.float64()),
            ("codec_id", pa.string()),
            ("split", pa.string()),
            ("tar_offset", pa.int64()),
            ("tar_bytes", pa.int64()),
            ("language", pa.string()),
            ("lid_score", pa.float64()),
            ("dnsmos_sig", pa.float64()),
            ("dnsmos_bak", pa.float64()),
            ("dnsmos_ovrl", pa.float64()),
            ("bandwidth_hz", pa.float64()),
            ("loudness_lufs", pa.float64()),
            ("loudness_normalized_to", pa.float64()),
            ("loudness_gain_db", pa.float64()),
        ]
    )


@dataclass
class Shard(Row):
    TABLE: ClassVar[str] = "shards"
    uri: str
    kind: str  # "segments" | "tokens"
    sample_kind: str  # "mono" | "dialog"
    source: str
    unit: str
    n_samples: int
    seconds: float
    bytes: int
    sha256: str
    codec_id: str = ""
    created_by: str = ""  # run_id

    SCHEMA: ClassVar[pa.Schema] = pa.schema(
        [
            ("uri", pa.string()),
            ("kind", pa.string()),
            ("sample_kind", pa.string()),
            ("source", pa.string()),
            ("unit", pa.string()),
            ("n_samples", pa.int64()),
            ("seconds", pa.float64()),
            ("bytes", pa.int64()),
            ("sha256", pa.string()),
            ("codec_id", pa.string()),
            ("created_by", pa.string()),
        ]
    )


@dataclass
class Reject(Row):
    """Something that did not become a sample, and why. ``reason`` is a short code, ``detail`` a sentence."""

    TABLE: ClassVar[str] = "rejects"
    item: str  # recording_id, or a segment id <recording_id>@<start>-<end>
    stage: str
    reason: str
    detail: str = ""
    source: str = ""
    recording_id: str = ""
    seconds: float | None = None

    SCHEMA: ClassVar[pa.Schema] = pa.schema(
        [
            ("item", pa.string()),
            ("stage", pa.string()),
            ("reason", pa.string()),
            ("detail", pa.string()),
            ("source", pa.string()),
            ("recording_id", pa.string()),
            ("seconds", pa.float64()),
        ]
    )


@dataclass
class Run(Row):
    TABLE: ClassVar[str] = "runs"
    run_id: str
    command: str
    config: str  # JSON
    versions: str  # JSON: python, torch, ray, matalu git sha
    started: str
    ended: str
    counts: str  # JSON

    SCHEMA: ClassVar[pa.Schema] = pa.schema(
        [
            ("run_id", pa.string()),
            ("command", pa.string()),
            ("config", pa.string()),
            ("versions", pa.string()),
            ("started", pa.string()),
            ("ended", pa.string()),
            ("counts", pa.string()),
        ]
    )


@dataclass
class Diarization(Row):
    """How the diarizer did on a recording whose true turns are known (or what it found, when none are)."""

    TABLE: ClassVar[str] = "diarization"
    recording_id: str
    source: str
    seconds: float
    hyp_speakers: int
    ref_speakers: int | None = None
    der: float | None = None  # collar 0, overlap scored
    der_collar025: float | None = None
    used_for_turns: bool = False

    SCHEMA: ClassVar[pa.Schema] = pa.schema(
        [
            ("recording_id", pa.string()),
            ("source", pa.string()),
            ("seconds", pa.float64()),
            ("hyp_speakers", pa.int32()),
            ("ref_speakers", pa.int32()),
            ("der", pa.float64()),
            ("der_collar025", pa.float64()),
            ("used_for_turns", pa.bool_()),
        ]
    )


ROW_TYPES: dict[str, type[Row]] = {c.TABLE: c for c in (Recording, Sample, Shard, Reject, Run, Diarization)}
