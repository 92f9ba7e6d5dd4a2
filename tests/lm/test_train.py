"""LM training: exact resume, a finished run extended by --steps, metrics and lineage beside the checkpoints, and a
2-worker Ray Train run (gloo) that survives a worker killed by PID through FailureConfig."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
import torch

import storage
from lm import checkpoint as ckpt
from lm.train import LMTrainConfig, load_config, train_local, train_ray
from tests.lm.tokens import write_token_shards


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("lmtok") / "tokens" / "testcodec")
    write_token_shards(root, [5, 8, 3, 9, 1], Q=4, K=64, frames=(20, 120))
    return root


def small(tokens, out, **kw) -> LMTrainConfig:
    d = dict(steps=6, batch_size=2, data=tokens, out=str(out), ckpt_every=3, log_every=1, val_every=3,
             val_fraction=0.2, warmup_steps=2, lr=3e-3)
    d.update(kw)
    return LMTrainConfig(**d)


def quiet(_s: str) -> None:
    pass


def test_stop_and_resume_reaches_the_same_loss(tokens, tmp_path):
    """6 steps straight vs stopped at step 3 then run again: the same losses at steps 4..6 (to the bit) and the same
    final weights, so model, optimizer, scheduler, loader position and RNG all came back."""
    full = train_local({}, "tiny", small(tokens, tmp_path / "full"), say=quiet)
    part = train_local({}, "tiny", small(tokens, tmp_path / "part"), say=quiet, stop_at=3)
    assert part.step == 3 and ckpt.latest(str(tmp_path / "part"))["step"] == 3
    rest = train_local({}, "tiny", small(tokens, tmp_path / "part"), say=quiet)
    assert rest.resumed_from == 3 and rest.step == 6
    a = {m["step"]: m["loss"] for m in full.history}
    b = {m["step"]: m["loss"] for m in rest.history}
    assert [a[s] for s in (4, 5, 6)] == [b[s] for s in (4, 5, 6)]
    assert a[6] < a[1]  # it learns
    for (k, x), (_, y) in zip(full.model.state_dict().items(), rest.model.state_dict().items()):
        assert torch.equal(x, y), k
    # val loss per stream/codebook at steps 3 and 6; the metrics file holds every logged step of both runs
    assert all(f"val_audio_cb{k}" in full.history[-1] for k in range(4))
    lines = [json.loads(x) for x in storage.read_text(str(tmp_path / "part" / "metrics.jsonl")).splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3, 4, 5, 6] and lines[-1]["resumed_from"] == 3
    # asking for fewer steps than done: nothing to do; more: the finished run goes on from its checkpoint
    again = train_local({}, "tiny", small(tokens, tmp_path / "part", steps=5), say=quiet)
    assert again.step == 6 and again.history == []
    more = train_local({}, "tiny", small(tokens, tmp_path / "part", steps=8), say=quiet)
    assert more.resumed_from == 6 and more.step == 8 and [m["step"] for m in more.history] == [7, 8]


def test_checkpoint_holds_configs_lineage_and_is_pruned(tokens, tmp_path):
    out = tmp_path / "run"
    train_local({}, "tiny", small(tokens, out, steps=8, ckpt_every=2, keep_checkpoints=2), say=quiet)
    dirs = sorted({f.rsplit("/", 1)[0] for f in storage.list_files(str(out / "checkpoints"), "meta.json")})
    assert [d.rsplit("/", 1)[1] for d in dirs] == ["step-0000006", "step-0000008"]
    meta = json.loads(storage.read_text(f"{dirs[-1]}/meta.json"))
    assert meta["step"] == 8 and meta["model"]["num_codebooks"] == 4 and meta["model"]["codebook_size"] == 64
    assert meta["train"]["steps"] == 8
    lin = meta["lineage"]
    assert lin["codec_id"] == "testcodec" and lin["samples"] == 26 and lin["manifests"] is False
    assert list(lin["hours_per_license"]) == ["CC-BY-4.0"] and list(lin["hours_per_source"]) == ["synthetic"]
    assert set(lin["hours_per_kind"]) == {"dialog", "mono"}
    st = torch.load(f"{dirs[-1]}/state.pt", weights_only=False)
    assert st["step"] == 8 and len(st["loader"]) == 1 and len(st["rng"]) == 1 and "scheduler" in st
    model, cfg, tok, m = ckpt.load_lm(str(out))
    assert tok is None and cfg.Q == 4 and m["step"] == 8 and not model.training


def test_bad_inputs_are_clear_errors(tokens, tmp_path):
    with pytest.raises(FileNotFoundError, match="matalu encode"):
        train_local({}, "tiny", small(str(tmp_path / "none"), tmp_path / "o"), say=quiet)
    with pytest.raises(ValueError, match="tokenizer"):
        train_local({}, "tiny", small(tokens, tmp_path / "o", text=True), say=quiet)
    train_local({}, "tiny", small(tokens, tmp_path / "o2", steps=1), say=quiet)
    with pytest.raises(ValueError, match="another model config"):
        train_local({"size": "tiny", "dim": 32, "num_heads": 2}, None, small(tokens, tmp_path / "o2", steps=2),
                    say=quiet)
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {stepz: 3}\n")
    with pytest.raises(ValueError, match="stepz"):
        load_config(str(bad))


def _train_worker_pids() -> list[int]:
    """PIDs of the Ray Train worker processes started under this test process (our own Ray only)."""
    import psutil

    me = psutil.Process(os.getpid())
    out = []
    for p in me.children(recursive=True):
        try:
            if "RayTrainWorker" in " ".join(p.cmdline()) or "RayTrainWorker" in p.name():
                out.append(p.pid)
        except psutil.Error:
            continue
    return out


def _killed_run(tokens, out) -> list[dict]:
    """A 2-worker run whose worker process is SIGKILLed by PID once the step-4 checkpoint exists; its metrics lines."""
    cfg = small(tokens, out, steps=16, ckpt_every=4, batch_size=4, val_every=0, log_every=2, max_failures=2)
    box = {}
    th = threading.Thread(target=lambda: box.update(r=train_ray({}, "tiny", cfg)), daemon=True)
    th.start()
    killed = None
    deadline = time.time() + 400
    while time.time() < deadline and th.is_alive():
        info = ckpt.latest(cfg.out)
        if info and info["step"] >= 4:
            pids = _train_worker_pids()
            if pids:
                killed = pids[-1]
                os.kill(killed, signal.SIGKILL)
                break
        time.sleep(0.05)
    th.join(500)
    r = box["r"]
    assert killed is not None, "the run ended before a worker could be killed"
    assert r.error is None, r.error
    lines = [json.loads(x) for x in storage.read_text(f"{cfg.out}/metrics.jsonl").splitlines()]
    assert lines[-1]["step"] == 16 and any(m["resumed_from"] >= 4 for m in lines), lines
    assert r.metrics["step"] == 16 and r.metrics["checkpoint_uri"] == ckpt.latest(cfg.out)["uri"]
    return lines


def test_ray_two_workers_survive_a_killed_worker(ray_session, tokens, tmp_path):
    """Two gloo DDP workers; one worker process is SIGKILLed by PID after the step-4 checkpoint; FailureConfig
    restarts the group, which resumes from the latest checkpoint (metrics say resumed_from >= 4) and finishes."""
    _killed_run(tokens, tmp_path / "killed")


@pytest.mark.slow  # two 2-worker TorchTrainer runs (~3-6 min on a loaded 2-CPU box); exact resume itself is covered
# fast by test_stop_and_resume_reaches_the_same_loss, FailureConfig by the test above
def test_killed_ray_run_matches_an_uninterrupted_one(ray_session, tokens, tmp_path):
    """The killed-and-restarted run logs the same loss as an uninterrupted one at every logged step after the
    restart (same world size: model, optimizer, loader position and RNG all resume exactly)."""
    lines = _killed_run(tokens, tmp_path / "killed")
    ref = train_ray({}, "tiny", small(tokens, tmp_path / "straight", steps=16, ckpt_every=4, batch_size=4,
                                      val_every=0, log_every=2))
    assert ref.error is None
    ref_lines = {m["step"]: m["loss"] for m in (json.loads(x) for x in storage.read_text(
        str(tmp_path / "straight" / "metrics.jsonl")).splitlines())}
    after = [m for m in lines if m["resumed_from"] > 0]
    assert after and all(m["loss"] == pytest.approx(ref_lines[m["step"]], rel=1e-6) for m in after)


@pytest.mark.parametrize("size", ["tiny", "125m", "1b"])
def test_documented_train_settings_are_the_defaults(size):
    """configs/lm-<size>.yaml's train: section lists every LMTrainConfig setting with its value for that size."""
    import dataclasses
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[2] / "configs" / f"lm-{size}.yaml"
    model, cfg = load_config(str(path))
    assert cfg == LMTrainConfig.preset(size) and model["size"] == size
    listed = yaml.safe_load(path.read_text())["train"]
    assert set(listed) == {f.name for f in dataclasses.fields(LMTrainConfig)}


def test_init_from_hf_and_lora_train_only_adapters(tokens, tmp_path):
    """--init hf:DIR + --lora 2: the run's temporal transformer has the HF model's shape and weights, only the
    adapters train (base weights stay the HF ones), the checkpoint resumes, and load_lm merges the adapters."""
    from tests.lm.test_hf_init import save_tiny

    hf = save_tiny("llama", tmp_path / "hf")
    cfg = small(tokens, tmp_path / "run", steps=3, init=f"hf:{tmp_path / 'hf'}", lora_rank=2, val_every=0)
    res = train_local({}, "tiny", cfg, say=quiet)
    sd = res.model.state_dict()
    assert res.model.cfg.num_kv_heads == 2 and res.model.cfg.ffn_dim == 96
    w = hf.model.layers[0].self_attn.q_proj.weight
    base = [k for k in sd if k.startswith("temporal.layers.0.") and "q_proj" in k and k.endswith("weight")
            and "lora" not in k]
    assert base and torch.equal(sd[base[0]], w)  # frozen: still the HF weights after 3 steps
    assert any(k.endswith("lora_b") and sd[k].abs().sum() > 0 for k in sd)  # adapters moved
    more = train_local({}, "tiny", small(tokens, tmp_path / "run", steps=4, init=cfg.init, lora_rank=2, val_every=0),
                       say=quiet)
    assert more.resumed_from == 3 and more.step == 4
    model, mcfg, _tok, _meta = ckpt.load_lm(str(tmp_path / "run"))
    assert not any("lora" in k for k in model.state_dict())
    with pytest.raises(ValueError, match="hf:DIR"):
        train_local({}, "tiny", small(tokens, tmp_path / "x", init="nothf"), say=quiet)


@pytest.mark.slow  # three 2-process spawns, each importing torch afresh: ~1 min idle, ~5 min on a loaded 2-CPU box
def test_fsdp2_two_processes_match_ddp_and_resume(tokens, tmp_path):
    """FSDP2 (fully_shard per block, gloo on CPU) over 2 processes: the same losses as DDP on the same data (the
    sharded step is the same maths), and a run stopped at step 3 resumes from its gathered full checkpoint."""
    from lm.train import train_spawn

    kw = dict(steps=3, batch_size=2, val_every=3, ckpt_every=3)
    train_spawn({}, "tiny", small(tokens, tmp_path / "ddp", **kw), 2)
    train_spawn({}, "tiny", small(tokens, tmp_path / "fsdp", fsdp=True, **kw), 2)
    train_spawn({}, "tiny", small(tokens, tmp_path / "fsdp", fsdp=True, **{**kw, "steps": 5}), 2)

    def lines(d):
        return [json.loads(x) for x in storage.read_text(str(tmp_path / d / "metrics.jsonl")).splitlines()]

    ddp, fsdp = lines("ddp"), lines("fsdp")
    assert [m["step"] for m in fsdp] == [1, 2, 3, 4, 5] and fsdp[-1]["resumed_from"] == 3
    for a, b in zip(ddp, fsdp[:3]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    assert ddp[-1]["val_loss"] == pytest.approx(fsdp[2]["val_loss"], rel=1e-5)
    st = torch.load(str(tmp_path / "fsdp" / "checkpoints" / "step-0000005" / "state.pt"), weights_only=False)
    assert len(st["loader"]) == 2 and st["loader"][0] != st["loader"][1]
    model, _cfg, _tok, meta = ckpt.load_lm(str(tmp_path / "fsdp"))
    assert meta["world"] == 2 and meta["train"]["fsdp"] is True
