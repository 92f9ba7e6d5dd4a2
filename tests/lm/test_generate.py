"""Streaming generation: the step's logits equal the training forward's on the same tokens (delays included),
the delay buffers give back whole frames, sampling controls, a conversation longer than the context window."""

from __future__ import annotations

import pytest
import torch
from lm_helpers import random_batch, tiny_lm

from lm.generate import cat_rows, init_rows, init_state, sample, select_rows, step

pytestmark = pytest.mark.usefixtures("one_thread")

CASES = {
    "text, uneven delays": dict(q=4, text_vocab=40, delays=[0, 1, 2, 2], text_delay=1),
    "Q=8, no text, default delays": dict(q=8),
    "no delays, shared depth weights, GQA": dict(q=4, text_vocab=40, delays=[0, 0, 0, 0], depth_per_step_weights=False,
                                                 num_kv_heads=2, qkv_bias=True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_streaming_logits_equal_the_training_forward(case):
    m = tiny_lm(**CASES[case])
    cfg = m.cfg
    b = random_batch(cfg, b=2, t=14)
    with torch.no_grad():
        out = m(b)
    system, text = m.delayed(b)
    state = init_state(m, batch_size=2)
    frames = []
    for t in range(14):
        codes, tx = step(m, state, b.codes[:, cfg.Q:, t], force_system=system[:, : cfg.Q, t],
                         force_text=None if text is None else text[:, t])
        torch.testing.assert_close(state.audio_logits, out.audio_logits[:, :, t], atol=1e-5, rtol=1e-5)
        if cfg.has_text:
            torch.testing.assert_close(state.text_logits, out.text_logits[:, t], atol=1e-5, rtol=1e-5)
        if t < cfg.max_delay:
            assert codes is None and tx is None
        else:
            frames.append(codes)
            if cfg.has_text:
                assert torch.equal(tx, b.text[:, t - cfg.max_delay])
    # the frames the step hands back are the (undelayed) system frames, in order
    got = torch.stack(frames, dim=-1)
    assert torch.equal(got, b.codes[:, : cfg.Q, : 14 - cfg.max_delay])


def test_sampling_controls():
    m = tiny_lm(q=4, text_vocab=40)
    user = torch.randint(0, 32, (1, 4))
    runs = []
    for seed in (1, 1, 2):
        st = init_state(m, seed=seed)
        runs.append([step(m, st, user, temperature=1.0, top_k=0)[0] for _ in range(6)][1:])
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[1]))  # same seed, same conversation
    assert not all(torch.equal(a, b) for a, b in zip(runs[0], runs[2]))
    # greedy: temperature 0, or top-k 1, pick the argmax
    logits = torch.randn(3, 50)
    assert torch.equal(sample(logits, 0.0, 0), logits.argmax(-1)) and torch.equal(sample(logits, 0.9, 1), logits.argmax(-1))
    g = torch.Generator().manual_seed(0)
    top = set(torch.topk(logits[0], 5).indices.tolist())
    assert all(int(sample(logits[:1], 2.0, 5, g)) in top for _ in range(50))
    st = init_state(m)
    codes = [step(m, st, user, temperature=[0.0, 0.0, 0.0, 0.0], text_temperature=0.0)[0] for _ in range(3)]
    assert torch.equal(st.audio[:, :4, 2 % st.window], st.audio_logits.argmax(-1))  # per-codebook greedy
    assert torch.equal(st.text[:, 2 % st.window], st.text_logits.argmax(-1))
    assert codes[-1].shape == (1, 4) and int(codes[-1].max()) < 32
    with pytest.raises(ValueError, match="give one number or one per codebook"):
        step(m, init_state(m), user, temperature=[0.5, 0.5])
    with pytest.raises(ValueError, match=r"user_codes must be \[B=1, Q=4\]"):
        step(m, init_state(m), torch.zeros(1, 8, dtype=torch.long))


def test_a_conversation_longer_than_the_context():
    """The temporal KV cache is a ring of ``context`` frames: generation keeps going past the training window."""
    m = tiny_lm(q=4, context=8)
    st = init_state(m, seed=0)
    out = [step(m, st, torch.randint(0, 32, (1, 4)))[0] for _ in range(20)]
    assert st.pos == 20 and all(c.shape == (1, 4) and int(c.max()) < 32 for c in out[1:])
    assert st.caches[0].k.shape[2] == 8


@pytest.mark.parametrize("case", ["text, uneven delays", "no delays, shared depth weights, GQA"])
def test_rows_joining_and_leaving_equal_separate_runs(case):
    """The server's batch: conversations join at different steps, pause (no user frame), leave; each row samples
    from its own generator at its own positions (past the context ring too) and gives exactly the tokens of the
    same conversation run alone."""
    m = tiny_lm(**dict(CASES[case], context=10))
    cfg = m.cfg
    g = torch.Generator().manual_seed(5)
    users = {s: torch.randint(0, cfg.K, (n, 1, cfg.Q), generator=g) for s, n in ((11, 25), (12, 14), (13, 18))}

    greedy = case == "no delays, shared depth weights, GQA"  # the batched argmax path
    kw = dict(temperature=0.0, text_temperature=0.0) if greedy else {}

    def alone(seed):
        st = init_state(m, seed=seed)
        return [step(m, st, u, **kw) for u in users[seed]]

    want = {s: alone(s) for s in users}
    got: dict[int, list] = {s: [] for s in users}
    joins = {0: 11, 3: 12, 9: 13}  # tick -> the conversation that joins
    pause = {(12, 5), (12, 6), (11, 8)}  # (conversation, tick): no user frame this tick
    state, order, fed = None, [], {s: 0 for s in users}
    for tick in range(40):
        if tick in joins:
            new = init_rows(m, [joins[tick]])
            state = new if state is None else cat_rows(state, new)
            order.append(joins[tick])
        done = [s for s in order if fed[s] == len(users[s])]
        if done:
            state = select_rows(state, [i for i, s in enumerate(order) if s not in done])
            order = [s for s in order if s not in done]
        if not order:
            break
        active = torch.tensor([(s, tick) not in pause for s in order])
        frame = torch.cat([users[s][min(fed[s], len(users[s]) - 1)] for s in order])
        codes, text = step(m, state, frame, active=active, **kw)
        for i, s in enumerate(order):
            if active[i]:
                fed[s] += 1
                ok = bool(codes[i, 0] >= 0)
                got[s].append((codes[i:i + 1] if ok else None, None if text is None or not ok else text[i:i + 1]))
            else:
                assert int(codes[i].max()) == -1
    for s in users:
        assert len(got[s]) == len(want[s])
        for (gc, gt), (wc, wt) in zip(got[s], want[s]):
            assert (gc is None) == (wc is None)
            if wc is not None:
                assert torch.equal(gc, wc)
                assert (wt is None and gt is None) or torch.equal(gt, wt)
