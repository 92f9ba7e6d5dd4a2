"""The LM loader over token shards: streams per kind, packing, equal batches per rank, exact resume, split."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lm.data import PackedStream, is_val, probe, token_shards, tokens_root
from tests.lm.tokens import write_token_shards

Q, K, SIL = 4, 64, 63


@pytest.fixture(scope="module")
def uneven(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tok") / "tokens" / "testcodec")
    samples = write_token_shards(root, [1, 9, 2, 14, 1, 3, 5], Q=Q, K=K)
    return root, samples


def stream(root, **kw):
    shards = token_shards(root)
    d = dict(context=50, batch_size=2, silence_code=SIL, seed=3)
    d.update(kw)
    return PackedStream(shards, probe(shards), **d)


def expected_streams(s: dict) -> np.ndarray:
    c = s["codes"].astype(np.int64)
    if s["kind"] == "mono":
        c = np.concatenate([c, np.full_like(c, SIL)])
    return c


def test_data_uri_forms_and_probe(uneven, tmp_path):
    root, _ = uneven
    out = root.rsplit("/tokens/", 1)[0]
    assert tokens_root(out) == root  # the encode output: its one tokens/<codec_id>/ folder
    assert token_shards(out) == token_shards(root) and len(token_shards(root)) == 7
    info = probe(token_shards(root))
    assert (info.num_codebooks, info.codebook_size, info.frame_rate, info.codec_id) == (Q, K, 12.5, "testcodec")
    with pytest.raises(FileNotFoundError, match="matalu encode"):
        token_shards(str(tmp_path / "nothing"))
    write_token_shards(str(tmp_path / "two" / "tokens" / "a"), [1])
    write_token_shards(str(tmp_path / "two" / "tokens" / "b"), [1])
    with pytest.raises(ValueError, match="2 codecs"):
        tokens_root(str(tmp_path / "two"))


def test_packing_keeps_every_frame_in_order_and_pads_only_the_end(uneven):
    """One finite pass over everything (one rank): the real frames of the windows, end to end, are the samples'
    streams (dialog: both channels; mono: system + silence code) in the pass's order; only the last window pads."""
    root, samples = uneven
    by_id = {s["sample_id"]: s for s in samples}
    st = stream(root, split="all", loop=False)
    batches = list(st)
    flat = np.concatenate([b.codes[i][:, b.mask[i].numpy()].numpy() for b in batches for i in range(len(b.codes))], 1)
    masks = [m for b in batches for m in b.mask.numpy()]
    assert all(m.all() for m in masks[:-1]) and masks[-1].any() and not masks[-1].all()
    total = sum(s["frames"] for s in samples)
    assert flat.shape == (2 * Q, total)
    # recover the order from the codes: frame 0 of sample n has row 0 = (7n) % K ... walk the samples
    order = []
    t = 0
    rng_ids = {(s["codes"][0, 0], s["codes"][1, 0], s["frames"]): s["sample_id"] for s in samples}
    while t < total:
        cand = [sid for (a, b, f), sid in rng_ids.items() if flat[0, t] == a and flat[1, t] == b
                and sid not in order and t + f <= total
                and np.array_equal(flat[:, t:t + f], expected_streams(by_id[sid]))]
        assert cand, f"frames at {t} are not the start of any sample"
        order.append(cand[0])
        t += by_id[cand[0]]["frames"]
    assert sorted(order) == sorted(by_id)
    assert st.stats.samples == len(samples) and st.stats.per_kind == {
        "dialog": sum(s["kind"] == "dialog" for s in samples), "mono": sum(s["kind"] == "mono" for s in samples)}
    assert st.stats.padding_fraction == st.stats.pad_frames / (len(masks) * 50)
    assert st.stats.pad_frames == len(masks) * 50 - total and st.stats.padding_fraction < 0.05


@pytest.mark.parametrize("world", [2, 3, 10])
def test_every_rank_gets_a_batch_at_every_step_from_uneven_shards(uneven, world):
    """Shards of 1..14 samples over 2, 3 and 10 ranks (10 > 7 shards: every rank reads every shard and keeps every
    world-th sample): each rank yields the same number of batches for as many steps as asked (epochs follow each
    other), and one epoch over all ranks covers every train sample exactly once."""
    root, samples = uneven
    steps = 40
    per_rank, seen = [], []
    for r in range(world):
        st = stream(root, rank=r, world=world, val_fraction=0.0)
        per_rank.append(len(list(itertools.islice(iter(st), steps))))
        one = stream(root, rank=r, world=world, loop=False)
        list(one)
        seen.append(one.stats.samples)
    assert per_rank == [steps] * world
    assert sum(seen) == len(samples)


@pytest.mark.parametrize("k", [1, 3, 7, 23])
def test_loader_state_restores_exactly(uneven, k):
    """Stop after k batches (mid-sample, and past an epoch end at k=23), restore the saved state in a new loader:
    the next batches equal the uninterrupted run's."""
    root, _ = uneven
    ref = list(itertools.islice(iter(stream(root, rank=1, world=2, val_fraction=0.2)), k + 6))
    first = list(itertools.islice(iter(stream(root, rank=1, world=2, val_fraction=0.2)), k))
    st = stream(root, rank=1, world=2, val_fraction=0.2)
    st.load_state_dict(first[-1].state)
    again = list(itertools.islice(iter(st), 6))
    for a, b in zip(again, ref[k:]):
        assert np.array_equal(a.codes, b.codes) and np.array_equal(a.mask, b.mask)
        assert a.state == b.state
    assert ref[-1].state["epoch"] >= (1 if k == 23 else 0)
    with pytest.raises(ValueError, match="loader state is for"):
        stream(root, rank=0, world=2, val_fraction=0.2).load_state_dict(first[-1].state)


def test_validation_split_is_fixed_by_sample_id(uneven):
    root, samples = uneven
    val_ids = {s["sample_id"] for s in samples if is_val(s["sample_id"], 0.3)}
    assert 0 < len(val_ids) < len(samples)
    tr = stream(root, split="train", val_fraction=0.3, loop=False)
    va = stream(root, split="val", val_fraction=0.3, loop=False)
    tr_frames = sum(b.real_frames for b in tr)
    va_frames = sum(b.real_frames for b in va)
    assert va.stats.samples == len(val_ids) and tr.stats.samples == len(samples) - len(val_ids)
    assert va_frames == sum(s["frames"] for s in samples if s["sample_id"] in val_ids)
    assert tr_frames + va_frames == sum(s["frames"] for s in samples)
    assert is_val("s00001", 0.3) == is_val("s00001", 0.3) and not is_val("s00001", 0.0)


def test_mixed_codecs_and_bad_samples_are_clear_errors(tmp_path):
    root = str(tmp_path / "mix")
    write_token_shards(root, [2], Q=4, source="a")
    write_token_shards(root, [2], Q=8, source="b", seed=1)
    st = stream(root, split="all", loop=False)
    with pytest.raises(ValueError, match="train on the tokens of one codec"):
        list(st)
    empty = str(tmp_path / "val-only")
    write_token_shards(empty, [1], Q=4)
    with pytest.raises(ValueError, match="no train samples"):
        next(iter(stream(empty, val_fraction=1.0)))
