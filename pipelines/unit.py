"""One work unit -> its segment shard parts and manifest parts (docs/DESIGN.md §4, §11).

A unit is a fixed, sorted list of recordings. Its output depends only on those recordings and the processing
config (the unit *fingerprint*), which gives determinism, resume (a unit whose ``_DONE`` marker holds the same
fingerprint is skipped) and retry (shards and parts go to temp names first, ``_DONE`` is written last).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

import storage
from jobs.runner import commit_unit
from manifests.rows import Diarization, Recording, Reject, Sample, Shard
from pipelines.config import IngestConfig
from pipelines.sources.manifest import safe_id
from pipelines.stages import measures as M
from pipelines.stages import quality as Q
from pipelines.stages.decode import Decoded, DecodeError, decode_bytes
from pipelines.stages.dedup import Fingerprint, add_landmarks
from pipelines.stages.lid import Lid
from pipelines.stages.read import read_audio
from pipelines.stages.segment import SYSTEM, USER, dialog_audio, dialog_windows, mono_spans, role_channels, turns_in
from pipelines.stages.stretch import Span
from pipelines.stages.vad import SileroVad, speech_mask, speech_regions
from storage.audio import encode_flac, flac_pcm_md5


@dataclass
class WorkUnit:
    unit_id: str
    source: str
    index: int
    recordings: list[Recording]
    fingerprint: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {"unit_id": self.unit_id, "source": self.source, "index": self.index, "fingerprint": self.fingerprint,
             "recordings": [r.to_dict() for r in self.recordings]},
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, s: str) -> "WorkUnit":
        d = json.loads(s)
        return cls(d["unit_id"], d["source"], d["index"], [Recording.from_dict(r) for r in d["recordings"]], d["fingerprint"])


def make_units(recordings: list[Recording], unit_size: int, processing_fp: str) -> list[WorkUnit]:
    """Group recordings by source, sort by id, cut into units of ``unit_size``."""
    by_source: dict[str, list[Recording]] = {}
    for r in recordings:
        by_source.setdefault(r.source, []).append(r)
    units = []
    for source in sorted(by_source):
        recs = sorted(by_source[source], key=lambda r: r.recording_id)
        for i in range(0, len(recs), unit_size):
            chunk = recs[i : i + unit_size]
            h = hashlib.sha256(processing_fp.encode())
            for r in chunk:
                h.update(json.dumps(r.to_dict(), sort_keys=True, ensure_ascii=False).encode())
            units.append(WorkUnit(f"{source}-{i // unit_size:05d}", source, i // unit_size, chunk, h.hexdigest()))
    return units


@dataclass
class _Track:
    channel: int  # channel index, or -1 for the mono mix
    audio: np.ndarray
    regions: list[tuple[float, float]] = field(default_factory=list)
    mask: np.ndarray | None = None
    noise: float = 0.0


# a sample, its audio, and where it lies: samples [a, b) of its recording's channel c (-1: the mono mix)
_Cut = tuple[Sample, np.ndarray, tuple[int, int, int]]


def _sources(group) -> tuple[list[np.ndarray], dict[tuple[int, int], int]]:
    """The group's recordings' mono mixes and channel tracks, and (group index, channel or -1) -> list index."""
    audio: list[np.ndarray] = []
    index: dict[tuple[int, int], int] = {}
    for g, (_, dec, tracks) in enumerate(group):
        index[(g, -1)] = len(audio)
        if tracks[0].channel < 0:  # mixed down for VAD already
            audio.append(tracks[0].audio)
            continue
        audio.append(dec.audio[0] if dec.channels == 1 else dec.audio.mean(axis=0))
        for t in tracks:
            index[(g, t.channel)] = len(audio)
            audio.append(t.audio)
    return audio, index


def _quality(tracks: list[_Track], a: int, b: int) -> Q.Quality:
    snrs, clip, union = [], 0.0, None
    for t in tracks:
        seg, m = t.audio[a:b], t.mask[a:b]
        clip = max(clip, Q.clipping_fraction(seg))
        union = m.copy() if union is None else (union | m)
        if m.any():
            snrs.append(Q.snr_db(seg, m, t.noise))
    ratio = float(union.mean()) if union is not None and union.size else 0.0
    return Q.Quality(snr_db=round(min(snrs), 2) if snrs else 0.0, speech_ratio=round(ratio, 4), clipping=round(clip, 6))


def _channel_spans(item, kind: str, index: dict[tuple[int, int], int], g: int, a: int, b: int,
                   ch: int) -> list[Span]:
    """Where each channel of a cut lies in :func:`_sources`' list: a mono cut on its track; a dialog window's
    channels on the recording's system and user channels when it keeps them apart, else both on the mono mix (split
    by turn times)."""
    if kind != "dialog":
        return [Span(index.get((g, ch), -1), a, b)]
    rec, dec, _ = item
    own = role_channels(rec.channel_roles, dec.channels)
    return [Span(index.get((g, c), -1), a, b) for c in (own or (-1, -1))]


class UnitProcessor:
    """Holds the VAD model; turns a unit into shards and manifest parts."""

    def __init__(self, cfg: IngestConfig, run_id: str = "") -> None:
        import torch

        torch.set_num_threads(1)  # one core per actor; also keeps float results independent of thread count
        storage.configure(cfg.storage)
        self.cfg = cfg
        self.run_id = run_id
        self.vad = SileroVad(cfg.vad.batch_windows, cfg.vad.model_rate)
        self.lid = Lid(cfg.filters.lid)
        self.measurer = M.Measurer(cfg.measures, cfg.sample_rate)

    # ------------------------------------------------------------------------------------------------------
    def process(self, unit: WorkUnit) -> dict:
        """Process the unit's recordings in bounded memory (docs/DESIGN.md §4).

        Recordings are read and decoded in order into a group until the group holds ``cfg.vad_batch_max_s`` of
        audio (a longer recording makes a group alone); the group is VAD-ed as one batch, diarized and cut, its
        candidate samples are measured together (bandwidth, loudness, DNSMOS batched; §7) and filtered, the kept
        ones FLAC-encoded at once into a temporary spill file, and its audio is dropped before the next
        recording is read. The shards are then written from the spill file in sample-id order. A unit's peak
        memory is bounded by that budget plus its longest recording, not by its total hours; a unit of short
        recordings is still one group, as before (one VAD batch, the same bytes)."""
        t0 = time.perf_counter()
        cfg = self.cfg
        # rejects by phase, concatenated in this order (decode, then diarize, then VAD/segment) as before
        phases: dict[str, list[Reject]] = {"decode": [], "diarize": [], "segment": []}
        recs: list[Recording] = []
        diar_rows: list[Diarization] = []
        items: dict[str, list[tuple[Sample, int, int]]] = {"mono": [], "dialog": []}
        fps: list[Fingerprint] = []  # for the run-level duplicate step (pipelines/stages/dedup.py)
        seconds_in = 0.0
        group: list[tuple[Recording, Decoded, list[_Track]]] = []

        def rejecter(phase: str):
            def reject(rec: Recording, item: str, stage: str, reason: str, detail: str,
                       seconds: float | None = None) -> None:
                phases[phase].append(Reject(item=item, stage=stage, reason=reason, detail=detail, source=rec.source,
                                            recording_id=rec.recording_id, seconds=seconds))
            return reject

        def flush(spill) -> None:
            all_tracks = [t for _, _, ts in group for t in ts]
            for t, p in zip(all_tracks, self.vad.probs([t.audio for t in all_tracks])):
                t.regions = speech_regions(p, len(t.audio), cfg.vad, cfg.sample_rate)
                t.mask = speech_mask(t.regions, len(t.audio), cfg.sample_rate)
                t.noise = Q.noise_floor(t.audio, t.mask)
            diar_rows.extend(self._diarize(group, rejecter("diarize")))
            cuts = [((g, *where), rec, kind, smp, audio) for g, (rec, dec, tracks) in enumerate(group)
                    for kind, cut in self._cut(rec, dec, tracks, rejecter("segment")).items()
                    for smp, audio, where in cut]
            # language ID first (cheap; a wrong-language sample is not measured)
            cuts = [c for c in cuts if self._language_ok(c[1], c[3], c[4], rejecter("segment"))]
            # DNSMOS and the duplicate landmarks cover each recording's speech once (pipelines/stages/stretch.py),
            # each sample taking its own time range's part: DNSMOS on the audio the sample holds (a mono sample
            # cut from one channel: that channel; the mix otherwise), the landmarks always on the mono mix
            # (the loudness: each channel on the track it copies)
            dnsmos, near = cfg.measures.dnsmos, cfg.filters.dedup.enabled and cfg.filters.dedup.near
            sources, index = _sources(group) if dnsmos or near or cfg.measures.loudness else ([], {})
            scores = self.measurer.measure([c[4] for c in cuts], cfg.filters,
                                           [Span(index.get((g, ch), -1), a, b) for (g, a, b, ch), *_ in cuts], sources,
                                           [_channel_spans(group[g], kind, index, g, a, b, ch)
                                            for (g, a, b, ch), _, kind, _, _ in cuts])
            # the measures' filters, optional loudness normalisation
            fp_spans: list[Span] = []
            group_fps: list[Fingerprint] = []
            for ((g, a, b, _), rec, kind, smp, audio), sc in zip(cuts, scores):
                bad = M.check(sc, cfg.filters)
                if bad:
                    rejecter("segment")(rec, smp.sample_id, "filters", bad[0], bad[1], smp.duration_s)
                    continue
                audio = self.measurer.normalize(audio, sc)
                for k in M.COLUMNS:
                    setattr(smp, k, getattr(sc, k))
                flac = encode_flac(audio, cfg.sample_rate, cfg.shards.flac_compression)
                smp.sha256 = storage.sha256_bytes(flac)
                if cfg.filters.dedup.enabled:  # the exact check: the PCM as written (its FLAC's MD5)
                    group_fps.append(Fingerprint(smp.sample_id, kind, rec.recording_id, rec.source, smp.duration_s,
                                                 flac_pcm_md5(flac)))
                    fp_spans.append(Span(index.get((g, -1), -1), a, b))
                items[kind].append((smp, spill.tell(), len(flac)))
                spill.write(flac)
            add_landmarks(group_fps, fp_spans, sources, cfg.filters.dedup)
            fps.extend(group_fps)
            del cuts, sources
            group.clear()  # the group's audio goes before the next recording is read

        with tempfile.TemporaryFile(prefix="matalu-unit-") as spill:
            group_s = 0.0
            for rec in unit.recordings:
                rec = Recording.from_dict(rec.to_dict())
                recs.append(rec)
                got = self._decode(rec, rejecter("decode"))
                if got is None:
                    continue
                group.append((rec, *got))
                seconds_in += got[0].duration_s
                group_s += got[0].duration_s
                del got
                if group_s >= cfg.vad_batch_max_s:
                    flush(spill)
                    group_s = 0.0
            if group:
                flush(spill)

            shard_rows: list[Shard] = []
            samples: list[Sample] = []
            for kind in ("mono", "dialog"):
                if items[kind]:
                    shard_rows += self._write_shards(unit, kind, items[kind], spill)
                    samples += [s for s, _, _ in items[kind]]

        rejects = phases["decode"] + phases["diarize"] + phases["segment"]
        self._commit_parts(unit, recs, samples, rejects, shard_rows, diar_rows, fps)
        return {
            "unit_id": unit.unit_id,
            "recordings": len(recs),
            "mono": len(items["mono"]),
            "dialog": len(items["dialog"]),
            "rejects": len(rejects),
            "seconds_in": round(seconds_in, 3),
            "seconds_out": round(sum(s.duration_s for s in samples), 3),
            "elapsed_s": round(time.perf_counter() - t0, 3),
        }

    def _decode(self, rec: Recording, reject) -> tuple[Decoded, list[_Track]] | None:
        """Read and decode one recording (its file bytes are dropped on return); None when it was rejected."""
        try:
            data = read_audio(rec)
        except Exception as e:  # missing file, S3 error, HTTP error, bad parquet member
            reject(rec, rec.recording_id, "read", "unreadable", f"cannot read {rec.uri}: {type(e).__name__}: {e}")
            return None
        rec.sha256 = storage.sha256_bytes(data)
        try:
            dec = decode_bytes(data, rec.uri, self.cfg.sample_rate)
        except DecodeError as e:
            reject(rec, rec.recording_id, "decode", e.reason, e.detail)
            return None
        rec.duration_s = round(dec.duration_s, 4)
        rec.sample_rate = dec.orig_sample_rate
        rec.channels = dec.orig_channels
        if rec.channel_roles and len(rec.channel_roles) == dec.channels:
            tracks = [_Track(c, dec.audio[c]) for c in range(dec.channels)]
        else:
            mix = dec.audio.mean(axis=0) if dec.channels > 1 else dec.audio[0]
            tracks = [_Track(-1, np.ascontiguousarray(mix))]
        return dec, tracks

    def _cut(self, rec: Recording, dec: Decoded, tracks: list[_Track], reject) -> dict[str, list[_Cut]]:
        """One recording's mono and dialog samples with their audio and where it lies in the recording (a recording
        without speech is rejected)."""
        cfg = self.cfg
        rid = safe_id(rec.recording_id)
        if not any(t.regions for t in tracks):
            reject(rec, rec.recording_id, "vad", "no_speech", f"no speech found in {dec.duration_s:.2f} s of audio",
                   round(dec.duration_s, 3))
            return {}
        try:
            m = self._mono(rec, rid, tracks, reject) if cfg.segment.mono else []
            d = self._dialogs(rec, rid, dec, tracks, reject) if cfg.segment.dialog and rec.turns else []
        except Exception as e:  # a bug must not lose the recording: it is rejected with the error
            reject(rec, rec.recording_id, "segment", "internal_error", f"{type(e).__name__}: {e}")
            return {}
        return {"mono": m, "dialog": d}

    def _language_ok(self, rec: Recording, smp: Sample, audio: np.ndarray, reject) -> bool:
        """Language ID of one sample (its transcript, else its recording's when the recording was cut into several
        samples, else its audio when --lid is given): a sample in another language becomes a ``wrong_language``
        reject; a kept one carries ``language`` and ``lid_score``."""
        v = self.lid.judge(smp.text or rec.text, audio, self.cfg.sample_rate)
        if v is None:
            return True
        if not v.ok:
            reject(rec, smp.sample_id, "lid", "wrong_language", v.detail, smp.duration_s)
            return False
        smp.language, smp.lid_score = v.language, v.score
        return True

    # ------------------------------------------------------------------------------------------------------
    def _diarize(self, decoded, reject) -> list[Diarization]:
        """Diarize the mono mix of recordings that need turns (podcasts) or a DER figure (synthetic)."""
        dz = self.cfg.diarization
        rows: list[Diarization] = []
        for rec, dec, tracks in decoded:
            need_turns = rec.source in dz.sources and not rec.turns
            need_der = rec.source in dz.report_der_sources and bool(rec.turns)
            if not (need_turns or need_der) or not any(t.regions for t in tracks):
                continue
            from pipelines.stages.der import der
            from pipelines.stages.diarize import get_diarizer
            from pipelines.stages.turns import diarization_to_turns

            mix = dec.audio.mean(axis=0) if dec.channels > 1 else dec.audio[0]
            try:
                segs = get_diarizer(dz.model).diarize(np.ascontiguousarray(mix), self.cfg.sample_rate)
            except Exception as e:  # the recording still gives mono samples; the failure is on record
                reject(rec, rec.recording_id, "diarize", "diarization_failed", f"{type(e).__name__}: {e}")
                continue
            row = Diarization(recording_id=rec.recording_id, source=rec.source, seconds=round(dec.duration_s, 3),
                              hyp_speakers=len({s[2] for s in segs}))
            if need_der:
                ref = [(t.start_s, t.end_s, t.speaker or t.role) for t in rec.turns]
                row.ref_speakers = len({r[2] for r in ref})
                row.der = round(der(ref, segs, collar=0.0), 5)
                row.der_collar025 = round(der(ref, segs, collar=0.25), 5)
            if need_turns:
                turns = diarization_to_turns(segs, merge_gap_s=dz.merge_gap_s,
                                             max_response_gap_s=dz.max_response_gap_s, system=dz.system)
                if {t.role for t in turns} >= {"user", "system"}:
                    rec.turns = turns  # the mono mix is split into system/user channels by these times
                    row.used_for_turns = True
            rows.append(row)
        return rows

    def _mono(self, rec: Recording, rid: str, tracks: list[_Track], reject) -> list[_Cut]:
        cfg, sr = self.cfg, self.cfg.sample_rate
        out = []
        spans_by_track = [(t, mono_spans(t.regions, cfg.filters.max_duration_s, cfg.segment.mono_max_gap_s)) for t in tracks]
        n_spans = sum(len(s) for _, s in spans_by_track)
        for t, spans in spans_by_track:
            role = rec.channel_roles[t.channel] if t.channel >= 0 else ""
            for s, e in spans:
                a, b = int(round(s * sr)), int(round(e * sr))
                tag = "x" if t.channel < 0 else str(t.channel)
                sid = f"{rec.source}__{rid}__m{tag}-{int(round(s * 1000)):07d}"
                q = _quality([t], a, b)
                dur = round((b - a) / sr, 4)
                bad = Q.check(dur, q, cfg.filters)
                if bad:
                    reject(rec, sid, "filters", bad[0], bad[1], dur)
                    continue
                if rec.turns:
                    ts = [x for x in turns_in(rec.turns, s, e) if not role or x.role == role]
                    text = " ".join(x.text for x in ts if x.text)
                    speakers = sorted({x.speaker for x in ts if x.speaker})
                else:
                    ts = []
                    text = rec.text if n_spans == 1 else ""
                    speakers = [rec.speaker_id] if rec.speaker_id else []
                audio = t.audio[a:b][None, :]
                smp = Sample(sample_id=sid, kind="mono", shard="", source=rec.source, recording_id=rec.recording_id,
                             start_s=round(s, 3), end_s=round(e, 3), duration_s=dur, channels=1, sample_rate=sr,
                             speakers=speakers, turns=ts, text=text, license=rec.license, snr_db=q.snr_db,
                             speech_ratio=q.speech_ratio, clipping=q.clipping, split=rec.split)
                out.append((smp, audio, (a, b, t.channel)))
        return out

    def _dialogs(self, rec: Recording, rid: str, dec: Decoded, tracks: list[_Track], reject) -> list[_Cut]:
        cfg, sr = self.cfg, self.cfg.sample_rate
        roles = {t.role for t in rec.turns}
        if not {SYSTEM, USER} <= roles:
            reject(rec, rec.recording_id, "turns", "no_exchange", f"turns have roles {sorted(roles)}; a dialog needs user and system")
            return []
        windows, short = dialog_windows(rec.turns, dec.duration_s, cfg.segment)
        for s, e, detail in short:
            reject(rec, f"{rec.source}__{rid}__d-{int(round(s * 1000)):07d}", "turns", "dialog_too_short", detail, round(e - s, 3))
        out = []
        for s, e in windows:
            a, b = int(round(s * sr)), int(round(e * sr))
            sid = f"{rec.source}__{rid}__d-{int(round(s * 1000)):07d}"
            ts = turns_in(rec.turns, s, e)
            audio = dialog_audio(dec.audio[:, a:b], rec.channel_roles, ts, sr, cfg.segment.fade_s)
            q = _quality(tracks, a, b)
            dur = round((b - a) / sr, 4)
            bad = Q.check(dur, q, cfg.filters, max_duration_s=cfg.segment.dialog_max_s)
            if bad:
                reject(rec, sid, "filters", bad[0], bad[1], dur)
                continue
            speakers = [next((t.speaker for t in ts if t.role == r), "") for r in (SYSTEM, USER)]
            smp = Sample(sample_id=sid, kind="dialog", shard="", source=rec.source, recording_id=rec.recording_id,
                         start_s=round(s, 3), end_s=round(e, 3), duration_s=dur, channels=2, sample_rate=sr,
                         speakers=speakers, turns=ts, text="\n".join(t.text for t in ts if t.text),
                         license=rec.license, snr_db=q.snr_db, speech_ratio=q.speech_ratio, clipping=q.clipping,
                         split=rec.split)
            out.append((smp, audio, (a, b, -1)))
        return out

    def _write_shards(self, unit: WorkUnit, kind: str, items: list[tuple[Sample, int, int]], spill) -> list[Shard]:
        """Shards of ``kind`` from samples whose FLAC bytes sit in ``spill`` at (offset, length), in sample-id order."""
        cfg = self.cfg
        base = storage.join(cfg.out, "segments", unit.source, kind)
        items.sort(key=lambda it: it[0].sample_id)
        writer = storage.ShardWriter(
            lambda part: storage.join(base, f"{unit.source}-{unit.index:05d}-{part:03d}.tar"),
            max_bytes=cfg.shards.max_bytes,
            max_samples=cfg.shards.max_samples,
        )
        seconds: dict[int, float] = {}
        with writer:
            for smp, offset, length in items:
                flac = os.pread(spill.fileno(), length, offset)
                meta = smp.to_dict()
                for k in ("shard", "tar_offset", "tar_bytes"):  # where it is stored is the manifest's business
                    meta.pop(k)
                meta["turns"] = [dict(t) for t in meta["turns"]]
                part = writer.write(smp.sample_id, {"flac": flac, "json": json.dumps(meta, ensure_ascii=False, sort_keys=True).encode()})
                seconds[part] = seconds.get(part, 0.0) + smp.duration_s
        for smp, _, _ in items:
            smp.shard, smp.tar_offset, smp.tar_bytes = writer.location(smp.sample_id)
        return [
            Shard(uri=info.uri, kind="segments", sample_kind=kind, source=unit.source, unit=unit.unit_id,
                  n_samples=info.n_samples, seconds=round(seconds[i], 3), bytes=info.bytes, sha256=info.sha256,
                  created_by=self.run_id)
            for i, info in enumerate(writer.shards)
        ]

    def _commit_parts(self, unit, recs, samples, rejects, shards, diar, fps) -> None:
        commit_unit(self.cfg.out, unit.unit_id, unit.fingerprint, self.run_id,
                    {"recordings": (recs, Recording), "samples": (samples, Sample), "rejects": (rejects, Reject),
                     "shards": (shards, Shard), "diarization": (diar, Diarization),
                     "fingerprints": (fps, Fingerprint)},
                    [s.uri for s in shards])
