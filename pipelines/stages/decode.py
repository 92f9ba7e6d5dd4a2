"""Decode audio bytes of any common container to float32 ``[channels, samples]`` and resample with soxr.

WAV, FLAC and Ogg/Vorbis go through libsndfile (soundfile); MP3, M4A/AAC, Opus, WebM and anything else that
FFmpeg reads go through torchcodec. Bad input raises :class:`DecodeError` with a short reason code that the
ingestion job turns into a ``Reject`` row:

``empty_file``   zero bytes
``undecodable``  not audio that either decoder can read (a text file named ``.wav``, a broken container)
``truncated``    the container promises more audio than the file holds (cut-off download or copy)
``non_finite``   samples decode to NaN or ±inf (corrupt float WAV)
``out_of_range`` samples decode far outside [-1, 1] (a float WAV holding garbage, e.g. 1e30): over ±``MAX_ABS``
``empty_audio``  a valid container with no samples in it
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from storage.audio import decode_audio, resample

MAX_ABS = 100.0  # 40 dB over full scale: no real recording; float garbage or mis-scaled integers
# Leading bytes of containers libsndfile reads well; everything else goes to FFmpeg.
_SNDFILE_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"FORM")


class DecodeError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class Decoded:
    audio: np.ndarray  # float32 [channels, samples] at sample_rate
    sample_rate: int
    orig_sample_rate: int
    orig_channels: int

    @property
    def channels(self) -> int:
        return int(self.audio.shape[0])

    @property
    def duration_s(self) -> float:
        return self.audio.shape[1] / self.sample_rate


def _wav_truncation(data: bytes) -> str | None:
    """If a RIFF/WAVE file's data chunk claims more bytes than the file has, describe the shortfall."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(data):
        cid = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        if cid == b"data":
            have = len(data) - (pos + 8)
            if size == 0 or size >= 0x7FFF0000:  # streamed WAV with unknown length (ffmpeg/espeak to a pipe)
                return None
            if have < size:
                return f"the WAV header declares {size} bytes of audio but the file holds {have} ({100 * have / size:.1f}%)"
            return None
        pos += 8 + size + (size & 1)
    return None


def _flac_total_samples(data: bytes) -> int | None:
    if data[:4] != b"fLaC" or len(data) < 42:
        return None
    # STREAMINFO is the first metadata block: 4-byte block header, then fields; total samples: 36 bits
    si = data[8:42]
    packed = int.from_bytes(si[10:18], "big")
    total = packed & ((1 << 36) - 1)
    return total or None


def _frames_before_error(data: bytes) -> int:
    """How many frames libsndfile decodes from ``data`` before it fails (a cut-off FLAC stops mid-frame)."""
    import io

    import soundfile as sf

    n = 0
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            while True:
                block = f.read(4096, dtype="float32", always_2d=True)
                if not len(block):
                    break
                n += len(block)
    except Exception:  # noqa: BLE001 - the point where decoding stops is what we measure
        pass
    return n


def _decode_ffmpeg(data: bytes) -> tuple[np.ndarray, int, float | None]:
    from torchcodec.decoders import AudioDecoder

    dec = AudioDecoder(data)
    header = dec.metadata.duration_seconds_from_header
    s = dec.get_all_samples()
    return s.data.numpy().astype(np.float32, copy=False), int(s.sample_rate), header


def _describe_start(data: bytes) -> str:
    head = data[:16]
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return f"starts with text {head.decode('ascii', 'replace')!r}"
    return f"starts with bytes {head.hex()}"


def decode_bytes(data: bytes, name: str = "", target_sr: int = 16000) -> Decoded:
    """Decode ``data`` (the whole file) to float32 ``[channels, samples]`` at ``target_sr``."""
    if len(data) == 0:
        raise DecodeError("empty_file", f"{name or 'input'} is 0 bytes long")
    header_frames: int | None = None
    header_duration: float | None = None
    if data[:4] in _SNDFILE_MAGIC:
        trunc = _wav_truncation(data)
        if trunc:
            raise DecodeError("truncated", trunc)
        header_frames = _flac_total_samples(data)
        try:
            x, sr = decode_audio(data)
        except Exception as e_sf:  # libsndfile refused: let FFmpeg try before giving up
            try:
                x, sr, header_duration = _decode_ffmpeg(data)
            except Exception:
                if header_frames is not None:  # a FLAC whose stream ends before its header says (cut-off copy)
                    got = _frames_before_error(data)
                    if got < header_frames:
                        raise DecodeError("truncated", f"the FLAC header declares {header_frames} samples but the "
                                                       f"stream breaks off after {got} ({e_sf})") from e_sf
                raise DecodeError("undecodable", f"cannot decode {name or 'input'}: {e_sf}") from e_sf
    else:
        try:
            x, sr, header_duration = _decode_ffmpeg(data)
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DecodeError(
                "undecodable", f"{name or 'input'} is not audio FFmpeg can read ({_describe_start(data)}): {msg}"
            ) from e
    if x.ndim != 2 or x.shape[1] == 0:
        raise DecodeError("empty_audio", f"{name or 'input'} decodes to no samples")
    if header_frames is not None and x.shape[1] < header_frames:
        raise DecodeError(
            "truncated", f"the FLAC header declares {header_frames} samples but only {x.shape[1]} decode"
        )
    if header_duration and header_duration > 0:
        got = x.shape[1] / sr
        if got < 0.9 * header_duration and header_duration - got > 0.5:
            raise DecodeError(
                "truncated", f"the header declares {header_duration:.2f} s but only {got:.2f} s decode"
            )
    lo, hi = float(np.min(x)), float(np.max(x))  # NaN and infinities show in these: no copy of the audio
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = int(x.size - np.isfinite(x).sum())
        raise DecodeError("non_finite", f"{bad} of {x.size} samples decode to NaN or infinity")
    peak = max(hi, -lo)
    if peak > MAX_ABS:
        bad = int(np.count_nonzero(np.abs(x) > MAX_ABS))
        raise DecodeError("out_of_range", f"{bad} of {x.size} samples are beyond ±{MAX_ABS:g} (peak {peak:.3g}); "
                                          "audio samples lie in [-1, 1]: the file is corrupt or mis-scaled")
    orig_sr, orig_ch = sr, x.shape[0]
    if sr != target_sr:
        x = resample(x, sr, target_sr)
    return Decoded(audio=x, sample_rate=target_sr, orig_sample_rate=orig_sr, orig_channels=orig_ch)


def stream_mono(path: str, target_sr: int = 16000, block_s: float = 60.0):
    """Yield a local audio file as float32 mono blocks of ``block_s`` seconds at ``target_sr`` (FFmpeg via
    torchcodec decodes only the block asked for, so an hour-long file never sits in memory whole)."""
    from torchcodec.decoders import AudioDecoder

    try:
        dec = AudioDecoder(path, sample_rate=target_sr, num_channels=1)
    except Exception as e:
        raise DecodeError("undecodable", f"{path} is not audio FFmpeg can read: {e}") from e
    dur = dec.metadata.duration_seconds
    t, got = 0.0, 0
    while dur is None or t < dur:
        try:
            s = dec.get_samples_played_in_range(t, t + block_s)
        except Exception:  # asked past the end of a stream whose header gave no duration
            break
        x = s.data.numpy()
        if x.shape[-1] == 0:
            break
        want = int(round((t + block_s) * target_sr)) - got  # keep the sample count exact across blocks
        x = x[0, :want].astype(np.float32, copy=False)
        got += len(x)
        yield x
        t += block_s
    if got == 0:
        raise DecodeError("empty_audio", f"{path} decodes to no samples")
