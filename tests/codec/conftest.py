"""Fixtures of the codec tests."""

from __future__ import annotations

import pytest
import torch

from codec.model import CodecConfig, CodecModel
from codec.train import CodecTrainConfig, save_checkpoint


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    m = CodecModel(CodecConfig.preset("tiny")).eval()
    d = tmp_path_factory.mktemp("codec")
    save_checkpoint(str(d), m, None, 0, CodecTrainConfig(size="tiny"))
    return str(d), m
