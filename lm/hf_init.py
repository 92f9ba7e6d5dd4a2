"""Start the temporal transformer from a local Hugging Face causal LM (``--init hf:DIR``), as Moshi started from
its text LM. Nothing is downloaded: DIR is a folder as ``save_pretrained`` writes it::

    DIR/config.json            model_type llama | qwen2 (SmolLM/SmolLM2 are llama), hidden_act silu
    DIR/*.safetensors          the weights (one file or shards)

What is copied: every decoder layer (norms, q/k/v/o projections and their biases, gate/up/down), the final norm,
and, when our text stream's vocabulary is the HF model's (``text_vocab == vocab_size``, i.e. the text stream uses
that model's tokenizer), its token embeddings and LM head (or the tie). The audio embeddings and the depth
transformer start fresh. The architecture settings (width, layers, heads, GQA key/value heads, head_dim, SwiGLU
size, RoPE theta, RMSNorm eps, q/k/v bias) come from config.json: :func:`lm_config_from_hf`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from lm.config import LMConfig
from lm.model import AudioLM

LAYOUT = ("a local Hugging Face causal LM folder (as save_pretrained writes it): config.json with model_type "
          "llama or qwen2, and the weights as *.safetensors")
SUPPORTED = ("llama", "qwen2")


def parse_init(spec: str) -> Path:
    """``hf:DIR`` -> DIR (the only init scheme)."""
    if not spec.startswith("hf:") or len(spec) <= 3:
        raise ValueError(f"--init {spec!r}: expected hf:DIR, DIR being {LAYOUT}")
    return Path(spec[3:]).expanduser()


def read_hf_config(folder: str | Path) -> dict:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--init hf:{folder}: no such folder; expected {LAYOUT}")
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"--init hf:{folder}: config.json is missing; expected {LAYOUT}")
    if not sorted(folder.glob("*.safetensors")):
        raise FileNotFoundError(f"--init hf:{folder}: no *.safetensors weights (save with safe_serialization); expected {LAYOUT}")
    try:
        d = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"--init hf:{folder}: config.json is not valid JSON ({e})") from None
    mt = d.get("model_type")
    if mt not in SUPPORTED:
        raise ValueError(f"--init hf:{folder}: model_type {mt!r} is not supported; use a Llama/Qwen2/SmolLM "
                         f"causal LM ({', '.join(SUPPORTED)})")
    return d


def hf_overrides(d: dict, where: str = "hf") -> dict:
    """LMConfig fields from an HF config.json mapping (errors for what our transformer cannot match)."""
    act = d.get("hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"--init {where}: hidden_act {act!r}; only SwiGLU (silu) models can be loaded")
    if d.get("mlp_bias"):
        raise ValueError(f"--init {where}: mlp_bias=true is not supported")
    rope = d.get("rope_parameters") or {}
    scaling = d.get("rope_scaling") or {}
    rtype = rope.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if rtype != "default":
        raise ValueError(f"--init {where}: rope type {rtype!r} (rope scaling) is not supported; plain RoPE only")
    if d.get("use_sliding_window") or any(t != "full_attention" for t in d.get("layer_types") or []):
        raise ValueError(f"--init {where}: sliding-window attention layers are not supported")
    heads = int(d["num_attention_heads"])
    dim = int(d["hidden_size"])
    head_dim = int(d.get("head_dim") or dim // heads)
    attention_bias = bool(d.get("attention_bias", False))
    return dict(
        dim=dim, num_layers=int(d["num_hidden_layers"]), num_heads=heads,
        num_kv_heads=int(d.get("num_key_value_heads") or heads),
        head_dim=0 if head_dim * heads == dim else head_dim,
        ffn_dim=int(d["intermediate_size"]),
        rope_theta=float(rope.get("rope_theta", d.get("rope_theta", 10000.0))),
        norm_eps=float(d.get("rms_norm_eps", 1e-6)),
        qkv_bias=d["model_type"] == "qwen2" or attention_bias,
        out_bias=attention_bias,
        tie_text_embeddings=bool(d.get("tie_word_embeddings", False)),
    )


def lm_config_from_hf(folder: str | Path, base: LMConfig) -> LMConfig:
    """``base`` (streams, depth transformer, loss settings) with the temporal transformer's shape from ``folder``."""
    return replace(base, **hf_overrides(read_hf_config(folder), f"hf:{folder}")).validate()


def _load_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for f in sorted(folder.glob("*.safetensors")):
        state.update(load_file(str(f)))
    return state


def init_from_hf(model: AudioLM, folder: str | Path) -> dict:
    """Copy ``folder``'s weights into ``model`` (built from :func:`lm_config_from_hf`); returns a report:
    ``{"model_type", "layers", "text": "copied" | reason, "fresh": [...]}``."""
    folder = Path(folder)
    d = read_hf_config(folder)
    want = hf_overrides(d, f"hf:{folder}")
    cfg = model.cfg
    wrong = {k: (getattr(cfg, k), v) for k, v in want.items() if k != "tie_text_embeddings" and getattr(cfg, k) != v}
    if wrong:
        raise ValueError(f"--init hf:{folder}: the LM's settings differ from config.json "
                         f"({', '.join(f'{k}: {a} vs {b}' for k, (a, b) in wrong.items())}); build it with lm_config_from_hf")
    hf = _load_weights(folder)
    hf = {k.removeprefix("model."): v for k, v in hf.items()}  # Llama/Qwen2: model.layers..., model.norm, lm_head
    ours = dict(model.named_parameters())
    plan: dict[str, str] = {"norm.weight": "norm.weight"}
    for name in ours:
        if name.startswith("temporal.layers."):
            plan[name] = name.removeprefix("temporal.")
    missing = sorted(src for src in plan.values() if src not in hf)
    if missing:
        raise ValueError(f"--init hf:{folder}: the weights lack {', '.join(missing[:5])}"
                         f"{' ...' if len(missing) > 5 else ''}; expected {LAYOUT}")
    with torch.no_grad():
        for dst, src in plan.items():
            _copy(ours[dst], hf[src], dst)
        text = "no text stream"
        vocab = int(d.get("vocab_size", hf["embed_tokens.weight"].shape[0]))
        if cfg.has_text and cfg.text_vocab != vocab:
            text = f"fresh: text_vocab {cfg.text_vocab} is not the HF vocabulary ({vocab}), so its embeddings do not apply"
        elif cfg.has_text:
            _copy(model.text_emb.weight[:vocab], hf["embed_tokens.weight"], "text_emb")
            if model.text_head is not None:  # our head is its own matrix: the HF head (a tied model's is the embedding)
                head = hf.get("lm_head.weight")
                if head is None and d.get("tie_word_embeddings"):
                    head = hf["embed_tokens.weight"]
                if head is None:
                    raise ValueError(f"--init hf:{folder}: tie_word_embeddings is false but the weights have no "
                                     f"lm_head.weight; expected {LAYOUT}")
                _copy(model.text_head.weight, head, "text_head")
            text = "copied"
    fresh = ["audio_emb", "depth"] + ([] if text == "copied" else ["text_emb", "text_head"] if cfg.has_text else [])
    return {"model_type": d["model_type"], "layers": cfg.num_layers, "text": text, "fresh": fresh}


def _copy(dst: torch.Tensor, src: torch.Tensor, name: str) -> None:
    if tuple(dst.shape) != tuple(src.shape):
        raise ValueError(f"--init hf: {name} has shape {tuple(src.shape)} in the HF weights, {tuple(dst.shape)} here")
    dst.copy_(src.to(dst.dtype))
