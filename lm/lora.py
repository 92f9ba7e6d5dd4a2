"""Low-rank adapters (LoRA, Hu et al. 2021) on the temporal transformer's linear layers (``--lora RANK``).

``apply_lora(model, rank)`` wraps every ``nn.Linear`` of ``model.temporal`` (q/k/v/o, gate/up/down) as
``W x + (alpha / rank) · B A x`` with ``A`` random, ``B`` zero (so the model is unchanged at the start), and makes
only the adapters trainable. With ``train_fresh=True`` the parts outside the temporal transformer stay trainable
too: after ``--init hf:DIR`` the audio embeddings and the depth transformer are fresh and must learn (Moshi trains
them fully); the pretrained temporal weights stay frozen either way. ``merge_lora(model)`` folds ``B A`` into
``W`` and puts plain ``nn.Linear`` layers back: the exported state dict is an ordinary :class:`AudioLM`'s.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1; got {rank}")
        self.base = base
        self.rank = rank
        self.scale = float(alpha if alpha is not None else rank) / rank
        dev, dt = base.weight.device, base.weight.dtype
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, device=dev, dtype=dt))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=dev, dtype=dt))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x) + (self.drop(x) @ self.lora_a.t() @ self.lora_b.t()) * self.scale

    def merged(self) -> nn.Linear:
        out = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None,
                        device=self.base.weight.device, dtype=self.base.weight.dtype)
        with torch.no_grad():
            out.weight.copy_(self.base.weight + self.scale * (self.lora_b @ self.lora_a))
            if self.base.bias is not None:
                out.bias.copy_(self.base.bias)
        return out


def _replace(root: nn.Module, fn) -> int:
    n = 0
    for name, child in list(root.named_children()):
        new = fn(child)
        if new is not None:
            setattr(root, name, new)
            n += 1
        else:
            n += _replace(child, fn)
    return n


def apply_lora(model: nn.Module, rank: int, alpha: float | None = None, dropout: float = 0.0,
               train_fresh: bool = False) -> int:
    """Wrap ``model.temporal``'s linear layers; freeze all else (``train_fresh``: all else but the temporal
    transformer and its final norm). Returns the number of layers wrapped."""
    n = _replace(model.temporal, lambda m: LoRALinear(m, rank, alpha, dropout) if isinstance(m, nn.Linear) else None)
    if n == 0:
        raise ValueError("apply_lora: the temporal transformer has no linear layers to adapt (already merged?)")
    for name, p in model.named_parameters():
        lora = name.endswith(("lora_a", "lora_b"))
        outside = not name.startswith(("temporal.", "norm."))
        p.requires_grad_(lora or (train_fresh and outside))
    return n


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight, in place; returns ``model`` (all parameters trainable again)."""
    _replace(model, lambda m: m.merged() if isinstance(m, LoRALinear) else None)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def lora_state(model: nn.Module) -> dict[str, Tensor]:
    """Only the adapters' weights (what a LoRA checkpoint needs besides its base)."""
    return {k: v for k, v in model.state_dict().items() if k.endswith(("lora_a", "lora_b"))}
