"""A pyannote pipeline directory with the real architectures and random weights, built offline.

Laid out like ``pyannote/speaker-diarization-community-1``::

    config.yaml                       SpeakerDiarization, VBx clustering, $model/... references
    segmentation/pytorch_model.bin    PyanNet (SincNet + 4 BiLSTM + 2 linear), powerset 3 speakers / 2 at once, 10 s
    embedding/pytorch_model.bin       WeSpeakerResNet34 (80 fbank bins, 256-d embeddings)
    plda/xvec_transform.npz           mean1 [256], mean2 [128], lda [256, 128]
    plda/plda.npz                     mu [128], tr [128, 128], psi [128]

The model files are Lightning-style checkpoints (``state_dict``, ``hyper_parameters``, and the
``pyannote.audio`` block ``Model.on_save_checkpoint`` writes), which ``Model.from_pretrained(path)`` loads.
Random weights exercise the plumbing (loading, inference, clustering, output) but diarize nothing useful.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

CONFIG_YAML = """\
version: 4.0.0

pipeline:
  name: pyannote.audio.pipelines.SpeakerDiarization
  params:
    clustering: VBxClustering
    embedding: $model/embedding
    embedding_batch_size: 32
    embedding_exclude_overlap: true
    plda: $model/plda
    segmentation: $model/segmentation
    segmentation_batch_size: 32

params:
  clustering:
    threshold: 0.6
    Fa: 0.07
    Fb: 0.8
  segmentation:
    min_duration_off: 0.0
"""


def save_lightning_checkpoint(model, path: Path) -> Path:
    import lightning
    import torch

    ckpt = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
            "pytorch-lightning_version": lightning.__version__}
    model.on_save_checkpoint(ckpt)  # adds the pyannote.audio block: versions, architecture, specifications
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path


def segmentation_model():
    """PyanNet as in segmentation-3.0 / community-1, random weights."""
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.segmentation import PyanNet

    m = PyanNet(sincnet={"stride": 10},
                lstm={"hidden_size": 128, "num_layers": 4, "bidirectional": True, "monolithic": True, "dropout": 0.0},
                linear={"hidden_size": 128, "num_layers": 2})
    m.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION, resolution=Resolution.FRAME, duration=10.0, min_duration=10.0,
        warm_up=(0.0, 0.0), classes=["speaker#1", "speaker#2", "speaker#3"], powerset_max_classes=2,
        permutation_invariant=True)
    m.build()
    return m.eval()


def embedding_model():
    """WeSpeakerResNet34 (the community-1 embedding architecture), random weights."""
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34

    m = WeSpeakerResNet34()
    m.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=10.0)
    m.build()
    return m.eval()


def build_checkpoint(root: str | Path, seed: int = 0) -> Path:
    """Write the directory; returns it."""
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    root = Path(root)
    torch.manual_seed(seed)
    save_lightning_checkpoint(segmentation_model(), root / "segmentation" / "pytorch_model.bin")
    save_lightning_checkpoint(embedding_model(), root / "embedding" / "pytorch_model.bin")
    rng = np.random.default_rng(seed)
    dim, lda_dim = 256, 128
    (root / "plda").mkdir(parents=True, exist_ok=True)
    lda = np.linalg.qr(rng.standard_normal((dim, dim)))[0][:, :lda_dim]
    np.savez(root / "plda" / "xvec_transform.npz", mean1=0.01 * rng.standard_normal(dim),
             mean2=0.01 * rng.standard_normal(lda_dim), lda=lda)
    np.savez(root / "plda" / "plda.npz", mu=np.zeros(lda_dim), tr=np.linalg.qr(rng.standard_normal((lda_dim, lda_dim)))[0],
             psi=np.sort(rng.uniform(0.5, 5.0, lda_dim))[::-1].copy())
    (root / "config.yaml").write_text(CONFIG_YAML)
    return root
