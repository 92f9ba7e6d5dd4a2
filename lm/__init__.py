"""The audio LM: a Moshi-style temporal + depth transformer over codec token streams.

lm/config.py (LMConfig, presets, special ids), lm/layers.py (RoPE/RMSNorm/SwiGLU/SDPA blocks), lm/model.py
(AudioLM, LMBatch, loss), lm/generate.py (streaming step with KV caches and delay buffers), lm/respond.py (audio in ->
stereo audio out through a codec), lm/hf_init.py (start from a local HF Llama/Qwen2/SmolLM folder), lm/lora.py
(low-rank adapters on the temporal transformer).

Imports codec, storage, manifests and jobs; never pipelines."""

from lm.config import LMConfig, mono_user_stream
from lm.model import AudioLM, LMBatch, LMLoss, LMOutput

__all__ = ["AudioLM", "LMBatch", "LMConfig", "LMLoss", "LMOutput", "mono_user_stream"]
