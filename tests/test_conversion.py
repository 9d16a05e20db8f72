"""Checkpoint conversion: released .pth layout, Hub layout, full-size manifests, labels, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

from transformers_dass import DassFeatureExtractor, DassForAudioClassification
from transformers_dass.model.conversion import (
    CheckpointConversionError,
    build_model,
    convert_checkpoint,
    infer_config_kwargs,
    to_native_state_dict,
)

from .conftest import require_fixture

REPO = Path(__file__).resolve().parents[1]


def manifest_state_dict(name: str) -> dict[str, torch.Tensor]:
    shapes = json.loads(require_fixture(name).read_text())
    return {key: torch.zeros(shape) for key, shape in shapes.items()}


@pytest.mark.parametrize(
    "manifest, depths, parameters",
    [("original_keys_small.json", [2, 2, 8, 2], 29_884_463), ("original_keys_medium.json", [2, 2, 20, 2], 48_648_239)],
)
def test_released_checkpoints_map_every_key(manifest, depths, parameters):
    state_dict = manifest_state_dict(manifest)
    native = to_native_state_dict(state_dict)
    assert len(native) == len(state_dict)
    kwargs = infer_config_kwargs(native)
    assert kwargs["dims"] == [96, 192, 384, 768] and kwargs["depths"] == depths and kwargs["num_labels"] == 527
    assert kwargs["d_state"] == 1 and "dt_rank" not in kwargs  # ceil(dim / 16) == "auto"
    model = build_model(state_dict)
    assert model.num_parameters() == parameters


def test_pth_without_prefix_and_labels_csv(tmp_path, original_tiny_weights, original_tiny):
    stripped = {k.removeprefix("module.v."): v for k, v in original_tiny_weights.items()}
    checkpoint = tmp_path / "DASS_tiny.pth"
    torch.save(stripped, checkpoint)
    labels = tmp_path / "labels.csv"
    labels.write_text("index,mid,display_name\n" + "".join(f'{i},/m/{i:03d},"Sound, {i}"\n' for i in range(10)))
    convert_checkpoint(checkpoint, tmp_path / "out", labels_csv=labels)
    model = AutoModelForAudioClassification.from_pretrained(tmp_path / "out")
    assert model.config.id2label[7] == "Sound, 7" and model.config.label2id["Sound, 7"] == 7
    assert model.config.label_mids[7] == "/m/007"
    assert isinstance(AutoFeatureExtractor.from_pretrained(tmp_path / "out"), DassFeatureExtractor)
    with torch.no_grad():
        logits = model(original_tiny["input.T200"]).logits
    torch.testing.assert_close(logits, original_tiny["logits.T200"], atol=1e-4, rtol=0)


def test_audioset_labels_csv_on_full_size_checkpoint(tmp_path):
    csv = require_fixture("class_labels_indices.csv")
    checkpoint = tmp_path / "small.safetensors"
    save_file(manifest_state_dict("original_keys_small.json"), str(checkpoint))
    convert_checkpoint(checkpoint, tmp_path / "out", labels_csv=csv)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["model_type"] == "dass" and len(config["id2label"]) == 527
    assert config["id2label"]["0"] == "Speech" and config["label_mids"][0] == "/m/09x0r"


def test_unknown_and_missing_keys_are_listed(original_tiny_weights):
    extra = dict(original_tiny_weights)
    extra["module.v.layers.0.blocks.0.op.mystery"] = torch.zeros(3)
    extra["module.v.teacher.head.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointConversionError, match=r"mystery.*teacher|teacher.*mystery"):
        to_native_state_dict(extra)
    missing = {k: v for k, v in original_tiny_weights.items() if "blocks.1.op.Ds" not in k}
    with pytest.raises(CheckpointConversionError, match=r"missing keys.*stages\.1\.blocks\.1\.mixer\.D"):
        build_model(missing)


def test_not_a_dass_checkpoint(tmp_path):
    with pytest.raises(CheckpointConversionError, match="Not a DASS checkpoint"):
        to_native_state_dict({"encoder.weight": torch.zeros(2)})
    bad = tmp_path / "weights.npz"
    bad.write_bytes(b"x")
    with pytest.raises(CheckpointConversionError, match="Unsupported checkpoint extension"):
        convert_checkpoint(bad, tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        convert_checkpoint(tmp_path / "absent.pth", tmp_path / "out")


def test_label_count_mismatch(tmp_path, original_tiny_weights):
    checkpoint = tmp_path / "tiny.safetensors"
    save_file(original_tiny_weights, str(checkpoint))
    with pytest.raises(ValueError, match="lists 527 labels but the checkpoint's head has 10"):
        convert_checkpoint(checkpoint, tmp_path / "out", labels_csv=require_fixture("class_labels_indices.csv"))


def test_hub_layout_state_dict_converts(original_tiny):
    from safetensors.torch import load_file

    hub = load_file(str(require_fixture("hub_tiny") / "model.safetensors"))
    model = build_model(hub)
    with torch.no_grad():
        torch.testing.assert_close(model(original_tiny["input.T200"]).logits, original_tiny["logits.T200"], atol=1e-4, rtol=0)


def test_conversion_script(tmp_path, original_tiny_weights):
    checkpoint = tmp_path / "tiny.safetensors"
    save_file(original_tiny_weights, str(checkpoint))
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "convert_original_checkpoint.py"), "--checkpoint", str(checkpoint),
         "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "depths [1, 2, 2, 1]" in result.stdout
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"config.json", "model.safetensors", "preprocessor_config.json"}
    assert isinstance(DassForAudioClassification.from_pretrained(tmp_path / "out"), DassForAudioClassification)


def test_hub_folder_converts_with_its_labels_or_a_csv(tmp_path, original_tiny):
    folder = require_fixture("hub_tiny")
    kept = convert_checkpoint(folder, tmp_path / "kept")
    assert kept.config.id2label[3] == "label_3" and kept.config.drop_path_rate == 0.2
    labels = tmp_path / "labels.csv"
    labels.write_text("index,mid,display_name\n" + "".join(f"{i},/m/{i:03d},Sound {i}\n" for i in range(10)))
    relabelled = convert_checkpoint(folder, tmp_path / "relabelled", labels_csv=labels)
    assert relabelled.config.id2label[3] == "Sound 3" and relabelled.config.label_mids[3] == "/m/003"
    assert relabelled.config.drop_path_rate == 0.2
    model = AutoModelForAudioClassification.from_pretrained(tmp_path / "relabelled")
    with torch.no_grad():
        torch.testing.assert_close(model(original_tiny["input.T200"]).logits, original_tiny["logits.T200"], atol=1e-4, rtol=0)
