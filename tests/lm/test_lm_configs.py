"""configs/lm-*.yaml list every model setting with its preset's value; unknown keys and bad settings are errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from lm.config import LMConfig, load_model_config, model_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("size", ["tiny", "125m", "1b"])
def test_documented_config_is_the_preset(size):
    path = CONFIGS / f"lm-{size}.yaml"
    assert load_model_config(str(path)) == LMConfig.preset(size)
    listed = yaml.safe_load(path.read_text())["model"]
    assert set(listed) == {f.name for f in dataclasses.fields(LMConfig)}, "every model setting is listed"


def test_tiny_preset_is_the_dataclass_default():
    assert LMConfig.preset("tiny") == LMConfig()


def test_partial_settings_fill_from_the_preset():
    cfg = model_config({"size": "125m", "num_codebooks": 4})
    assert (cfg.dim, cfg.num_layers, cfg.Q, cfg.codebook_delays) == (768, 12, 4, [0, 1, 1, 1])


def test_unknown_and_bad_settings_are_errors():
    with pytest.raises(ValueError, match="unknown LM model config keys: nope"):
        model_config({"nope": 1})
    with pytest.raises(ValueError, match="unknown LM size"):
        LMConfig.preset("7b")
    with pytest.raises(ValueError, match="one per codebook"):
        LMConfig.preset("tiny", num_codebooks=4, delays=[0, 1])
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        LMConfig.preset("tiny", num_heads=4, num_kv_heads=3)
    with pytest.raises(ValueError, match="text_pad_id=3 is outside"):
        LMConfig.preset("tiny", text_vocab=3)
    with pytest.raises(ValueError, match="must be a mapping"):
        model_config([1, 2])


def test_round_trip_through_dict():
    cfg = LMConfig.preset("tiny", num_codebooks=6, delays=[0, 2, 1, 1, 1, 1], text_vocab=40)
    assert LMConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.max_delay == 2 and cfg.user_silence_id == cfg.codebook_size + 1
