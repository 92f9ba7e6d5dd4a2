"""--init hf:DIR: a tiny random Llama and Qwen2 saved by save_pretrained load into the temporal transformer; with
the audio streams left out of the sum, our text logits are the HF model's on the same tokens. LoRA adapters."""

from __future__ import annotations

import pytest
import torch
from lm_helpers import random_batch, tiny_cfg, tiny_lm

from lm import AudioLM, LMBatch
from lm.hf_init import init_from_hf, lm_config_from_hf, parse_init
from lm.lora import LoRALinear, apply_lora, lora_state, merge_lora

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = 100


def save_tiny(kind: str, folder, **kw):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    common = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=96, vocab_size=VOCAB, max_position_embeddings=256, rms_norm_eps=1e-6)
    torch.manual_seed(0)
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common, rope_theta=50000.0, **kw))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**common, rope_theta=20000.0, **kw))
    with torch.no_grad():  # random init leaves biases and norms trivial; make them count
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.eval().save_pretrained(folder)
    return model


@pytest.mark.parametrize("kind,kw", [("llama", {}), ("qwen2", {"tie_word_embeddings": True})])
def test_text_logits_equal_the_hf_model(tmp_path, kind, kw):
    hf = save_tiny(kind, tmp_path / kind, **kw)
    cfg = lm_config_from_hf(parse_init(f"hf:{tmp_path / kind}"), tiny_cfg(q=4, text_vocab=VOCAB))
    assert (cfg.num_kv_heads, cfg.ffn_dim, cfg.qkv_bias, cfg.tie_text_embeddings) == (2, 96, kind == "qwen2", kind == "qwen2")
    torch.manual_seed(1)
    model = AudioLM(cfg).eval()
    fresh_depth = model.depth_head.weight.clone()
    report = init_from_hf(model, tmp_path / kind)
    assert report["text"] == "copied" and report["layers"] == 2
    assert torch.equal(model.depth_head.weight, fresh_depth)  # the depth transformer starts fresh
    tokens = torch.randint(0, VOCAB, (2, 21), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = hf(input_ids=tokens).logits
        ours = model.text_logits(model.hidden(None, tokens, include_audio=False))
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=1e-4)
    # with the audio streams in, the same weights run as the audio LM
    codes = torch.randint(0, 32, (2, 8, 21))
    with torch.no_grad():
        out = model(LMBatch(codes, tokens))
    assert out.text_logits.shape == (2, 21, VOCAB) and out.audio_logits.shape == (2, 4, 21, 32)


def test_other_vocabulary_keeps_text_fresh_and_layers_loaded(tmp_path):
    hf = save_tiny("llama", tmp_path / "l")
    model = AudioLM(lm_config_from_hf(tmp_path / "l", tiny_cfg(q=4, text_vocab=40)))
    report = init_from_hf(model, tmp_path / "l")
    assert report["text"].startswith("fresh: text_vocab 40 is not the HF vocabulary (100)")
    assert torch.equal(model.temporal.layers[1].mlp.down_proj.weight, hf.model.layers[1].mlp.down_proj.weight)
    no_text = AudioLM(lm_config_from_hf(tmp_path / "l", tiny_cfg(q=4)))
    assert init_from_hf(no_text, tmp_path / "l")["text"] == "no text stream"


def test_bad_folders_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="expected hf:DIR"):
        parse_init("/some/dir")
    with pytest.raises(FileNotFoundError, match="no such folder; expected a local Hugging Face causal LM folder"):
        lm_config_from_hf(tmp_path / "nope", tiny_cfg())
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"config.json is missing; .*\*.safetensors"):
        lm_config_from_hf(tmp_path / "empty", tiny_cfg())
    save_tiny("llama", tmp_path / "l")
    (tmp_path / "l" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"no \*.safetensors weights"):
        lm_config_from_hf(tmp_path / "l", tiny_cfg())
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "config.json").write_text('{"model_type": "gpt2"}')
    (tmp_path / "g" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="model_type 'gpt2' is not supported"):
        lm_config_from_hf(tmp_path / "g", tiny_cfg())
    save_tiny("llama", tmp_path / "m")
    with pytest.raises(ValueError, match="the LM's settings differ from config.json"):
        init_from_hf(AudioLM(tiny_cfg()), tmp_path / "m")


def test_lora_trains_only_adapters_and_merges_to_the_same_model():
    m = tiny_lm(q=4, text_vocab=40).train()
    b = random_batch(m.cfg, b=2, t=12)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    assert apply_lora(m, rank=4, alpha=8) == 2 * 7  # q, k, v, o, gate, up, down per layer
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith(("lora_a", "lora_b")) for n in trainable)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], 1e-2)
    for _ in range(3):
        loss = m.loss(b)
        opt.zero_grad()
        loss.total.backward()
        assert all((p.grad is not None) == p.requires_grad for p in m.parameters())
        opt.step()
    for name, v in m.state_dict().items():  # base weights untouched, adapters moved
        if not name.endswith(("lora_a", "lora_b")):
            assert torch.equal(v, before[name.replace(".base.", ".")]), name
    assert any(float(v.abs().sum()) > 0 for k, v in lora_state(m).items() if k.endswith("lora_b"))
    m.eval()
    with torch.no_grad():
        unmerged = m(b)
        merge_lora(m)
        merged = m(b)
    assert not any(isinstance(x, LoRALinear) for x in m.modules())
    torch.testing.assert_close(merged.audio_logits, unmerged.audio_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(merged.text_logits, unmerged.text_logits, atol=1e-5, rtol=1e-5)
    plain = AudioLM(m.cfg)
    plain.load_state_dict(m.state_dict())  # the export is an ordinary AudioLM
    assert not torch.equal(plain.temporal.layers[0].self_attn.q_proj.weight, before["temporal.layers.0.self_attn.q_proj.weight"])


def test_lora_train_fresh_keeps_audio_and_depth_trainable():
    m = tiny_lm(q=4)
    apply_lora(m, rank=2, train_fresh=True)
    grad = {n for n, p in m.named_parameters() if p.requires_grad}
    assert "depth_head.weight" in grad and "audio_emb.0.weight" in grad
    assert not any(n.startswith(("temporal.", "norm.")) and "lora_" not in n for n in grad)
