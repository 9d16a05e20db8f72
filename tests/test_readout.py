"""Clip readouts (`clip_pooling`): "mean" is the paper's model unchanged, "max" is the highest step of frame_logits,
on the standard and the lean path, every scan backend, in the loss, saved in config.json, and in `dass classify`."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from transformers_dass import (
    DassConfig,
    DassFeatureExtractor,
    DassForAudioClassification,
)
from transformers_dass.cli import main as cli_main
from transformers_dass.model.readout import (
    choose_clip_pooling,
    pool_frame_logits,
    read_out,
    resolve_clip_pooling,
)

from .conftest import require_fixture
from .test_lean_inference import BACKENDS

# The lean path computes the same layers in other chunks: float32 sums in another order (as test_lean_inference).
LEAN_TOL = 1e-4


def tiny_model(**kwargs) -> DassForAudioClassification:
    defaults = dict(dims=[8, 16, 24, 32], depths=[1, 1, 1, 1], num_labels=5, drop_path_rate=0.0, num_mel_bins=24)
    return DassForAudioClassification(DassConfig(**{**defaults, **kwargs})).eval()


def test_default_auto_is_the_mean_up_to_the_training_length_bit_for_bit():
    torch.manual_seed(0)
    model = tiny_model()
    assert model.config.clip_pooling == "auto" and model.config.training_length_frames == 1024
    inputs = torch.randn(2, 203, 24)
    with torch.no_grad():
        before = model(inputs, return_frame_logits=True)
        explicit = model(inputs, clip_pooling="mean", return_frame_logits=True)
        pooled = model.classifier(model.dass(inputs).pooler_output)
    assert torch.equal(before.logits, pooled)  # the pooled features through the head, bit for bit
    assert torch.equal(explicit.logits, before.logits) and torch.equal(explicit.frame_logits, before.frame_logits)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["standard", "lean"])
@pytest.mark.parametrize("frames", [203, 1001])
def test_max_is_the_highest_step_of_frame_logits(backend, mode, frames):
    torch.manual_seed(0)
    model = tiny_model(scan_backend=backend)
    inputs = torch.randn(2, frames, 24)
    with torch.no_grad():
        steps = model(inputs, inference_mode="standard", return_frame_logits=True).frame_logits
        out = model(inputs, inference_mode=mode, clip_pooling="max", return_frame_logits=True)
    by_hand = torch.stack([torch.stack([steps[b, :, k].max() for k in range(5)]) for b in range(2)])
    assert steps.shape == (2, -(-frames // 32), 5)
    tolerance = 0.0 if mode == "standard" else LEAN_TOL
    torch.testing.assert_close(out.logits, by_hand, atol=tolerance, rtol=0)
    torch.testing.assert_close(out.frame_logits, steps, atol=tolerance, rtol=0)
    # a batch of one gives the same numbers as its row of the batch
    with torch.no_grad():
        single = model(inputs[1:], inference_mode=mode, clip_pooling="max").logits
    torch.testing.assert_close(single[0], out.logits[1], atol=LEAN_TOL, rtol=0)


def test_config_readout_is_used_and_the_argument_overrides_it():
    torch.manual_seed(0)
    model = tiny_model(clip_pooling="max")
    inputs = torch.randn(1, 300, 24)
    with torch.no_grad():
        frames = model(inputs, return_frame_logits=True).frame_logits
        assert torch.equal(model(inputs).logits, frames.amax(dim=1))
        pooled = model.classifier(model.dass(inputs).pooler_output)
        assert torch.equal(model(inputs, clip_pooling="mean").logits, pooled)
        assert model(inputs, return_dict=False)[0].shape == (1, 5)


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_loss_uses_the_chosen_readout(pooling):
    torch.manual_seed(0)
    model = tiny_model().train()
    inputs = torch.randn(2, 150, 24)
    labels = torch.tensor([[1.0, 0, 0, 1, 0], [0, 1, 0, 0, 0]])
    out = model(inputs, labels=labels, clip_pooling=pooling, return_frame_logits=True)
    expected = out.frame_logits.amax(1) if pooling == "max" else out.logits
    torch.testing.assert_close(out.loss, F.binary_cross_entropy_with_logits(expected, labels))
    out.loss.backward()  # the max readout trains: gradients reach the first layer
    assert model.dass.embeddings.conv1.weight.grad.abs().sum() > 0


def test_bad_readouts_name_the_choices():
    with pytest.raises(ValueError, match=r"clip_pooling.*'mean', 'max'"):
        DassConfig(clip_pooling="average")
    with pytest.raises(ValueError, match=r"clip_pooling.*'mean', 'max'"):
        tiny_model()(torch.randn(1, 40, 24), clip_pooling="MAX")
    with pytest.raises(ValueError, match="time_steps"):
        pool_frame_logits(torch.zeros(1, 0, 5), "max")


def test_saved_readout_is_honoured_by_from_pretrained_and_the_pipeline(tmp_path):
    from transformers import pipeline

    torch.manual_seed(0)
    model = tiny_model(clip_pooling="max", num_mel_bins=128, problem_type="multi_label_classification")
    model.save_pretrained(tmp_path)
    extractor = DassFeatureExtractor(max_length=300)
    extractor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["clip_pooling"] == "max"
    loaded = DassForAudioClassification.from_pretrained(tmp_path).eval()
    assert loaded.config.clip_pooling == "max"
    waveform = torch.randn(16000 * 2).numpy() * 0.1
    features = extractor(waveform, sampling_rate=16000, return_tensors="pt")["input_values"]
    with torch.no_grad():
        expected = loaded(features, return_frame_logits=True).frame_logits.amax(1)[0].sigmoid()
    predictions = pipeline("audio-classification", model=str(tmp_path))(waveform, top_k=2)
    values, indices = expected.topk(2)
    assert [p["label"] for p in predictions] == [f"LABEL_{i}" for i in indices.tolist()]
    torch.testing.assert_close(torch.tensor([p["score"] for p in predictions]), values, atol=1e-5, rtol=0)


def test_read_out_gives_every_readout_from_one_forward():
    torch.manual_seed(0)
    model = tiny_model().train()
    inputs = torch.randn(2, 77, 24)
    result = read_out(model, inputs, ["mean", "max"])
    assert model.training  # restored
    with torch.no_grad():
        model.eval()
        assert torch.equal(result.clip_logits["mean"], model(inputs).logits)
        assert torch.equal(result.clip_logits["max"], model(inputs, clip_pooling="max").logits)
    assert result.frame_logits.shape == (2, 3, 5)


def test_auto_readout_switches_to_max_beyond_the_training_length():
    assert resolve_clip_pooling("auto", 1024, 1024) == "mean"
    assert resolve_clip_pooling("auto", 1025, 1024) == "max"
    assert resolve_clip_pooling("mean", 10**6, 1024) == "mean" and resolve_clip_pooling("max", 10, 1024) == "max"
    # the command line's auto is the model's own setting, so that it answers as the forward and pipeline() do
    assert choose_clip_pooling("auto", "auto", 1025, 1024) == "max"
    assert choose_clip_pooling("auto", "mean", 10**6, 1024) == "mean"
    assert choose_clip_pooling("max", "mean", 10, 1024) == "max"
    with pytest.raises(ValueError, match="clip-pooling"):
        choose_clip_pooling("median", "mean", 10, 1024)
    with pytest.raises(ValueError, match="clip_pooling"):
        tiny_model(clip_pooling="median")


def test_forward_auto_follows_the_input_length():
    torch.manual_seed(0)
    model = tiny_model(training_length_frames=100)
    with torch.no_grad():
        for frames, pooling in ((100, "mean"), (101, "max")):
            inputs = torch.randn(2, frames, 24)
            assert torch.equal(model(inputs).logits, model(inputs, clip_pooling=pooling).logits)
    with pytest.raises(ValueError, match="training_length_frames"):
        tiny_model(training_length_frames=0)


def test_cli_names_the_readout_of_each_file(converted_tiny, capsys):
    path = str(require_fixture("babble_all.wav"))  # 15 s: beyond the 10 s training length
    assert cli_main(["classify", path, "--model", str(converted_tiny), "--top-k", "2", "--json"]) == 0
    assert {p["clip_pooling"] for p in json.loads(capsys.readouterr().out)} == {"max"}
    assert cli_main(["classify", path, "--model", str(converted_tiny), "--clip-pooling", "mean"]) == 0
    assert "(clip readout: mean)" in capsys.readouterr().out.splitlines()[0]
    with pytest.raises(SystemExit):
        cli_main(["classify", path, "--model", str(converted_tiny), "--clip-pooling", "median"])
