"""DassConfig defaults, presets, Hub field names and validation."""

from __future__ import annotations

import json

import pytest
from transformers import AutoConfig

from transformers_dass import DassConfig


def test_defaults_are_dass_small():
    config = DassConfig()
    assert config.dims == [96, 192, 384, 768] and config.depths == [2, 2, 8, 2]
    assert (config.d_state, config.ssm_ratio, config.dt_rank, config.mlp_ratio) == (1, 1.0, "auto", 4.0)
    assert (config.ssm_conv, config.ssm_conv_bias, config.patch_size, config.num_mel_bins) == (3, False, 4, 128)
    assert (config.drop_path_rate, config.layer_norm_eps, config.num_labels) == (0.2, 1e-5, 527)
    assert config.problem_type is None  # inferred from the first labels, as transformers does
    assert config.scan_backend == "auto"
    assert config.dt_ranks == [6, 12, 24, 48]


def test_medium_preset():
    config = DassConfig.medium()
    assert config.depths == [2, 2, 20, 2] and config.drop_path_rate == 0.3
    assert DassConfig.medium(num_labels=10).num_labels == 10


def test_hub_remote_code_field_names(tmp_path):
    hub = {"model_type": "dass", "embed_dim": 16, "dims": [16, 32, 64, 128], "depths": [1, 2, 2, 1],
           "num_classes": 10, "max_length": 1024, "use_checkpoint": False, "num_mel_bins": 128,
           "auto_map": {"AutoConfig": "configuration_dass.DASSConfig"}}
    (tmp_path / "config.json").write_text(json.dumps(hub))
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, DassConfig)
    assert config.num_labels == 10 and config.dims == [16, 32, 64, 128]
    assert DassConfig(embed_dim=48).dims == [48, 96, 192, 384]


def test_round_trip(tmp_path):
    config = DassConfig(dims=[8, 16], depths=[1, 1], dt_rank=[2, 3], num_labels=3, label_mids=["/m/a", "/m/b", "/m/c"])
    config.save_pretrained(tmp_path)
    loaded = DassConfig.from_pretrained(tmp_path)
    assert loaded.dt_ranks == [2, 3] and loaded.label_mids == ["/m/a", "/m/b", "/m/c"] and loaded.num_labels == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(dims=[96, 192], depths=[2, 2, 8]), "equal length"),
        (dict(dims=[95, 192, 384, 768]), "even"),
        (dict(d_state=0), "d_state"),
        (dict(dt_rank="big"), "dt_rank"),
        (dict(dt_rank=[1, 2]), "one positive int per stage"),
        (dict(ssm_conv=4), "odd"),
        (dict(patch_size=3), "patch_size"),
        (dict(drop_path_rate=1.5), "drop_path_rate"),
        (dict(scan_backend="gpu-magic"), "scan_backend"),
        (dict(embed_dim=32, dims=[96, 192, 384, 768]), "embed_dim"),
        (dict(num_labels=2, label_mids=["/m/a"]), "label_mids"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DassConfig(**kwargs)
