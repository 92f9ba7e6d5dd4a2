"""Conversation metrics of an LM on held-out dialogs (the plan's phase-4 evaluation; ``matalu lm eval --dialogs``).

For each held-out ``dialog`` sample (a segment shard's 2-channel 16 kHz window: channel 0 system, channel 1 user,
its turns in the JSON) the user channel goes through :func:`lm.respond.respond` (the frame-by-frame path of a live
call, seeded ``seed + i``), and the same measures are taken on the generated system channel and on the data's own
system channel, side by side:

* turn-taking (:mod:`lm.conversation`): gap / overlap between the end of each user turn and the system's reply
  onset, reply length, the share of user turns answered; system speech, silence and babble ratios. The system's
  speech is found by a VAD given by the caller (``vad``: 16 kHz mono clips -> speech regions in seconds; the CLI
  passes the ingest pipeline's Silero VAD: lm must not import pipelines, docs/DESIGN.md §2). The user's speech is
  the sample's user turns (the VAD on channel 1 when it has none).
* codec re-encode consistency of the replies: the system's codes (the LM's generated codes; the codec's codes of
  the data's channel) are decoded and encoded again: the share of codes that come back the same, and mel distance
  and SI-SDR of the re-encoded codes' audio against the first decode. Codes the codec's encoder gives from real
  speech come back nearly unchanged; code sequences no speech would give do not (a reference-free measure: the
  generated reply has no reference audio).
* with an ASR model (:mod:`lm.asr`): the character error rate of each answer window (a user turn's start to the
  next user turn) against the reference answer (the text of the data's system turns starting there), on the
  generated channel and, as the ASR's own floor, on the data's channel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch

import storage
from lm import conversation as conv
from manifests.rows import Turn

SAMPLE_RATE = 16000
Vad = Callable[[list[np.ndarray]], list[list[conv.Region]]]


@dataclass
class Dialog:
    sample_id: str
    source: str
    audio: np.ndarray  # float32 [2, n] at 16 kHz: 0 system, 1 user
    turns: list[Turn]

    @property
    def seconds(self) -> float:
        return self.audio.shape[1] / SAMPLE_RATE


def held_out_dialogs(uri: str, *, max_dialogs: int = 0, keep: Callable[[str], bool] | None = None) -> Iterator[Dialog]:
    """The ``dialog`` samples of the segment shards under ``uri`` (an ingest output or a folder of shards), in shard
    order, the first ``max_dialogs`` (0: all) for which ``keep(sample_id)`` holds. Clear errors for a URI without
    segment shards, token shards (no audio), or shards with no dialog sample."""
    from storage.audio import read_sample

    try:
        shards = storage.segment_shards(uri)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"--dialogs {uri}: no segment shards (*.tar) there; pass the ingest output (or its "
                                f"segments/ folder) holding the held-out dialog windows") from e
    n = mono = skipped = 0
    for shard in shards:
        for key, members in storage.iter_shard(shard):
            if "codes.npy" in members and "flac" not in members:
                raise ValueError(f"--dialogs {uri}: {shard} holds token shards (codes, no audio); pass the ingest "
                                 f"output whose segment shards they were encoded from")
            head = json.loads(members["json"]) if "json" in members else {}
            sid = str(head.get("sample_id") or key)
            if head.get("kind", "mono") != "dialog":  # decided from the JSON: mono audio is never decoded
                mono += 1
                continue
            if keep is not None and not keep(sid):
                skipped += 1
                continue
            meta, audio = read_sample(members)
            if audio.shape[0] != 2:
                raise ValueError(f"dialog sample {sid} in {shard} has {audio.shape[0]} channel(s); a dialog has 2 "
                                 f"(0 system, 1 user): re-ingest it")
            if int(meta.get("sample_rate") or SAMPLE_RATE) != SAMPLE_RATE:
                raise ValueError(f"dialog sample {sid} is at {meta['sample_rate']} Hz; --dialogs needs the ingest's "
                                 f"16 kHz segment shards")
            yield Dialog(sid, str(meta.get("source", "")), audio, [Turn.from_dict(t) for t in meta.get("turns") or []])
            n += 1
            if max_dialogs and n >= max_dialogs:
                return
    if not n:
        why = (f"{skipped} dialog(s) there, none in the run's validation split (pass --split all)" if skipped
               else f"{mono} mono sample(s) and no 2-channel dialog window")
        raise ValueError(f"--dialogs {uri}: {why}; --dialogs needs held-out dialog samples (an ingest output of a "
                         f"dialog source such as synthetic)")


def user_regions(d: Dialog) -> list[conv.Region]:
    return conv.merge([(t.start_s, t.end_s) for t in d.turns if t.role == "user"])


def answers(d: Dialog, ex: list[conv.Exchange]) -> list[tuple[float, float, str]]:
    """(window start, window end, reference answer) per user turn whose window holds system turns with text."""
    out = []
    for x in ex:
        ref = " ".join(t.text for t in d.turns if t.role == "system" and t.text.strip()
                       and x.user_start <= t.start_s < x.window_end)
        if ref:
            out.append((x.user_start, x.window_end, ref))
    return out


def reencode(codec: Any, codes: torch.Tensor) -> dict:
    """Round trip of ``codes`` ``[1, Q, F]``: ``x = decode(codes)``, ``c = encode(x)``; the share of codes that come
    back (all levels, level 0), and mel distance and SI-SDR of ``decode(c)`` against ``x``."""
    from codec.eval import si_sdr
    from codec.losses import mel_distance

    x = codec.decode(codes).reshape(-1).float().cpu()
    c = codec.encode(x[None, None]).cpu()
    f = min(codes.shape[-1], c.shape[-1])
    same = codes[..., :f].cpu() == c[..., :f]
    y = codec.decode(c).reshape(-1).float().cpu()
    return {"mel_distance": mel_distance(y, x), "si_sdr": si_sdr(y.numpy(), x.numpy()),
            "codes_kept": float(same.float().mean()), "codes_kept_cb0": float(same[:, 0].float().mean()),
            "frames": int(f)}


SIDES = ("generated", "data")


def evaluate_dialogs(model: Any, codec: Any, dialogs: Iterator[Dialog], vad: Vad, *, seed: int = 0,
                     temperature: float = 0.8, top_k: int = 250, asr: Any = None,
                     progress: Callable[[str], None] | None = None) -> dict:
    """Run :func:`lm.respond.respond` on every dialog's user channel and measure both system channels (module doc).
    ``asr``: an :class:`lm.asr.Transcriber` or None."""
    from lm.asr import cer_counts
    from lm.respond import respond

    talk = {s: conv.Talk() for s in SIDES}
    exs: dict[str, list[conv.Exchange]] = {s: [] for s in SIDES}
    rt: dict[str, list[dict]] = {s: [] for s in SIDES}
    cer_sum = {s: [0, 0] for s in SIDES}
    per: list[dict] = []
    n_answers = 0
    for i, d in enumerate(dialogs):
        frames: list[torch.Tensor] = []
        out = respond(d.audio[1], codec, model, temperature=temperature, top_k=top_k, seed=seed + i,
                      codes_out=frames)
        codes = {"generated": torch.stack(frames, dim=-1),
                 "data": codec.encode(torch.from_numpy(np.ascontiguousarray(d.audio[0]))[None, None])}
        chans = {"generated": out[0], "data": d.audio[0]}
        users = user_regions(d)
        clips = [chans["generated"], chans["data"]] + ([] if users else [d.audio[1]])
        regions = vad(clips)
        if not users:
            users = conv.merge(regions[2])
        row: dict = {"sample_id": d.sample_id, "source": d.source, "seconds": round(d.seconds, 3), "seed": seed + i,
                     "user_turns": [[round(s, 3), round(e, 3)] for s, e in users]}
        refs = None
        for j, side in enumerate(SIDES):
            system = conv.merge(regions[j])
            ex = conv.exchanges(users, system, d.seconds)
            exs[side] += ex
            one = conv.Talk().add(users, system, d.seconds)
            talk[side].add(users, system, d.seconds)
            r = reencode(codec, codes[side])
            rt[side].append(r)
            row[side] = {"speech": [[round(s, 3), round(e, 3)] for s, e in system],
                         "exchanges": [e.to_dict() for e in ex], **one.ratios(),
                         "reencode": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}}
            if asr is not None:
                refs = answers(d, conv.exchanges(users, [], d.seconds)) if refs is None else refs
                hyps = asr.transcribe([chans[side][int(a * SAMPLE_RATE):int(b * SAMPLE_RATE)] for a, b, _ in refs])
                row[side]["answers"] = []
                for (a, b, ref), hyp in zip(refs, hyps):
                    e, c = cer_counts(ref, hyp)
                    cer_sum[side][0] += e
                    cer_sum[side][1] += c
                    row[side]["answers"].append({"start_s": round(a, 3), "end_s": round(b, 3), "reference": ref,
                                                 "transcript": hyp, "cer": round(e / c, 4) if c else None})
        n_answers += len(refs or [])
        per.append(row)
        if progress:
            progress(f"[lm] dialog {i + 1}: {d.sample_id} ({d.seconds:.1f} s)")
    res: dict = {"dialogs": len(per), "seconds": round(sum(r["seconds"] for r in per), 3), "seed": seed,
                 "codec_id": str(getattr(codec, "codec_id", ""))}
    for side in SIDES:
        block = {**conv.timing(exs[side]), **talk[side].ratios(), "reencode": _means(rt[side])}
        if asr is not None:
            e, c = cer_sum[side]
            block["asr"] = {"answers": n_answers, "reference_chars": c, "cer": round(e / c, 4) if c else None}
        res[side] = block
    if asr is not None:
        res["asr_model"] = {"path": getattr(asr, "folder", ""), "kind": asr.kind}
    res["per_dialog"] = per
    return res


def _means(rows: list[dict]) -> dict:
    keys = ("mel_distance", "si_sdr", "codes_kept", "codes_kept_cb0")
    return {k: round(float(np.mean([r[k] for r in rows])), 4) if rows else None for k in keys}


def _pct(p: dict) -> str:
    if not p.get("n"):
        return "-"
    return f"{p['p10']:.2f} / {p['p50']:.2f} / {p['p90']:.2f}  (n={p['n']})"


def _num(v: Any, fmt: str = "{:.3f}") -> str:
    return "-" if v is None else fmt.format(v)


def render(res: dict) -> str:
    """The conversation table: one row per measure, generated vs the data's own system channel."""
    g, d = res["generated"], res["data"]
    rows: list[tuple[str, str, str]] = [
        ("user turns answered", _num(g["replied"]), _num(d["replied"])),
        ("gap s p10 / p50 / p90", _pct(g["gap_s"]), _pct(d["gap_s"])),
        ("overlap s p10 / p50 / p90", _pct(g["overlap_s"]), _pct(d["overlap_s"])),
        ("reply length s p10 / p50 / p90", _pct(g["reply_s"]), _pct(d["reply_s"])),
        ("system speech ratio", _num(g["system_speech_ratio"]), _num(d["system_speech_ratio"])),
        ("silence ratio (neither speaks)", _num(g["silence_ratio"]), _num(d["silence_ratio"])),
        ("babble ratio (over the user)", _num(g["babble_ratio"]), _num(d["babble_ratio"])),
        ("re-encode mel distance", _num(g["reencode"]["mel_distance"]), _num(d["reencode"]["mel_distance"])),
        ("re-encode SI-SDR dB", _num(g["reencode"]["si_sdr"], "{:.2f}"), _num(d["reencode"]["si_sdr"], "{:.2f}")),
        ("re-encode codes kept (all / cb0)",
         f"{_num(g['reencode']['codes_kept'])} / {_num(g['reencode']['codes_kept_cb0'])}",
         f"{_num(d['reencode']['codes_kept'])} / {_num(d['reencode']['codes_kept_cb0'])}"),
    ]
    if "asr" in g:
        rows.append((f"ASR CER ({g['asr']['answers']} answers)", _num(g["asr"]["cer"]), _num(d["asr"]["cer"])))
    w0 = max(len(r[0]) for r in rows) + 2
    w1 = max(len(r[1]) for r in rows + [("", "generated", "")]) + 2
    head = (f"conversation: {res['dialogs']} dialogs, {res['seconds']:.1f} s, {g['user_turns']} user turns "
            f"(seed {res['seed']})")
    lines = [head, f"{'measure':<{w0}}{'generated':<{w1}}data"]
    lines += [f"{a:<{w0}}{b:<{w1}}{c}" for a, b, c in rows]
    return "\n".join(lines)
