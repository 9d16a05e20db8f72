"""Frame skips (`config.frame_skip_stages`): heads on earlier, finer stages whose scores, interpolated from their
own steps, add to the frame model's steps. Checked against a float64 computation from the stages' hidden states;
new skips change nothing; folders, dtypes, the lean path, training and the timeline carry them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForAudioClassification, AutoModelForAudioFrameClassification

from transformers_dass import DassConfig, DassForAudioClassification, DassForAudioFrameClassification, DassModel
from transformers_dass.inference.timeline import frame_scores

from .test_frame_model import MEL, classifier_twin, numpy_upsampling, tiny_config
from .test_lean_inference import TOL as LEAN_TOL


def skip_model(stages=(1, 2), **kwargs) -> DassForAudioFrameClassification:
    """A tiny frame model with skips on `stages`, their heads given random weights (new ones are zero)."""
    torch.manual_seed(0)
    model = DassForAudioFrameClassification(tiny_config(frame_skip_stages=list(stages), **kwargs)).eval()
    with torch.no_grad():
        for parameter in model.frame_skips.parameters():
            parameter.normal_(0, 0.5)
    return model


def reference_logits(model: DassForAudioFrameClassification, inputs: torch.Tensor) -> np.ndarray:
    """The frame model's logits, (batch, steps, labels) float64, by hand: the last stage's frame scores and each
    skip stage's scores (its output averaged over frequency, LayerNorm, linear), each interpolated between its
    own step centres (np.interp) to the centres of the fine steps, summed."""
    config = model.config
    twin = classifier_twin(model).double().requires_grad_(False)
    with torch.no_grad():
        out = twin(inputs.double(), output_hidden_states=True, return_frame_logits=True, inference_mode="standard")
    frames = inputs.shape[1]
    result = []
    for b in range(inputs.shape[0]):
        total = numpy_upsampling(out.frame_logits[b].numpy(), frames, config.frames_per_step, config.frame_upsampling)
        for stage in config.frame_skip_stages:
            head = twin.frame_skips[str(stage)]
            steps = out.hidden_states[stage + 1][b].mean(dim=1).T  # (C, F', T') -> (T', C)
            norm = head.layernorm
            normed = F.layer_norm(steps, steps.shape[-1:], norm.weight, norm.bias, norm.eps)
            scores = (normed @ head.proj.weight.T + head.proj.bias).numpy()
            stride = config.stage_step_frames(stage)
            total = total + numpy_upsampling(scores, frames, stride, stride // config.fine_step_frames)
        result.append(total)
    return np.stack(result)


@pytest.mark.parametrize("stages", [(0,), (1, 2), (0, 1, 2)])
@pytest.mark.parametrize("frames", [97, 203])
def test_logits_add_each_skip_stage_interpolated_from_its_own_steps(stages, frames):
    model = skip_model(stages).double()
    inputs = torch.randn(2, frames, MEL, dtype=torch.float64)
    with torch.no_grad():
        logits = model(inputs, inference_mode="standard").logits
    expected = reference_logits(model, inputs)
    assert logits.shape == expected.shape == (2, -(-frames // 4), 5)
    np.testing.assert_allclose(logits.numpy(), expected, rtol=0, atol=1e-9 * np.abs(expected).max())
    coarse_only = DassForAudioFrameClassification(tiny_config()).double().eval()
    coarse_only.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("frame_skips")})
    with torch.no_grad():
        assert (coarse_only(inputs).logits - logits).abs().max() > 1e-3  # the skips are in the sum


def test_clip_logits_do_not_use_the_skips():
    model = skip_model()
    inputs = torch.randn(1, 203, MEL)
    with torch.no_grad():
        with_skips = model(inputs, return_clip_logits=True, clip_pooling="max").clip_logits
        plain = classifier_twin(model)(inputs, clip_pooling="max").logits
    assert torch.equal(with_skips, plain)


def test_the_classifier_returns_the_frame_models_logits_on_request():
    model = skip_model()
    classifier = classifier_twin(model)
    inputs = torch.randn(2, 150, MEL)
    with torch.no_grad():
        expected = model(inputs).logits
        out = classifier(inputs, return_fine_frame_logits=True)
        assert classifier(inputs).fine_frame_logits is None
        as_tuple = classifier(inputs, return_fine_frame_logits=True, return_dict=False)
    assert torch.equal(out.fine_frame_logits, expected) and torch.equal(as_tuple[-1], expected)
    mask = torch.ones(2, 150, dtype=torch.long)
    mask[1, 100:] = 0
    with pytest.raises(ValueError, match="cannot be stacked"):
        classifier(inputs, attention_mask=mask, return_fine_frame_logits=True)


def test_new_skips_start_at_zero_and_change_nothing(tmp_path):
    torch.manual_seed(0)
    plain = DassForAudioClassification(tiny_config(problem_type="multi_label_classification"))
    plain.save_pretrained(tmp_path / "plain")
    grown, info = DassForAudioFrameClassification.from_pretrained(
        tmp_path / "plain", frame_skip_stages=[1, 2], output_loading_info=True
    )
    assert sorted(info["missing_keys"]) == sorted(
        f"frame_skips.{s}.{name}"
        for s in (1, 2)
        for name in ("layernorm.weight", "layernorm.bias", "proj.weight", "proj.bias")
    )
    assert all(grown.frame_skips[s].proj.weight.abs().sum() == 0 for s in ("1", "2"))
    assert DassForAudioFrameClassification(grown.config).frame_skips["1"].proj.bias.abs().sum() == 0
    inputs = torch.randn(1, 203, MEL)
    with torch.no_grad():
        before = DassForAudioFrameClassification.from_pretrained(tmp_path / "plain").eval()(inputs).logits
        after = grown.eval()(inputs).logits
    assert torch.equal(before, after)


def test_a_folder_with_skips_loads_in_both_classes_and_keeps_them_in_float32(tmp_path):
    model = skip_model(problem_type="multi_label_classification")
    model.save_pretrained(tmp_path / "frames")
    back, info = AutoModelForAudioClassification.from_pretrained(tmp_path / "frames", output_loading_info=True)
    assert isinstance(back, DassForAudioClassification) and back.config.frame_skip_stages == [1, 2]
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    for name, tensor in model.state_dict().items():
        assert torch.equal(back.state_dict()[name], tensor), name
    half = AutoModelForAudioFrameClassification.from_pretrained(tmp_path / "frames", dtype=torch.bfloat16).eval()
    assert half.dass.layernorm.weight.dtype == torch.bfloat16
    assert {p.dtype for p in half.frame_skips.parameters()} == {torch.float32}
    with torch.no_grad():
        assert half(torch.randn(1, 100, MEL)).logits.dtype == torch.float32


def test_lean_path_equals_the_standard_path_with_skips():
    model = skip_model()
    inputs = torch.randn(1, 331, MEL)
    with torch.no_grad():
        standard = model(inputs, inference_mode="standard").logits
        lean = model(inputs, inference_mode="lean").logits
        classifier = classifier_twin(model)
        modes = ("standard", "lean")
        coarse = [classifier(inputs, inference_mode=m, return_frame_logits=True).frame_logits for m in modes]
        pooled = [model.dass(inputs, inference_mode=m, pooled_stages=(1, 2)).pooled_stage_outputs for m in modes]
    # First order: the interpolation is convex, so the 0.32 s part differs by at most the frame logits' gap; a skip
    # stage's pooled features differ by delta, which LayerNorm turns into at most 2 delta / sigma (the mean and the
    # spread each move by <= delta), scaled by |gamma| and summed over a row of the linear layer (its L1 norm). The
    # network's own lean tolerance (test_lean_inference) stands for the rounding on top.
    bound = (coarse[1] - coarse[0]).abs().max().item() + LEAN_TOL
    for index, stage in enumerate(("1", "2")):
        features = pooled[0][index]
        delta = (pooled[1][index] - features).abs().max().item()
        sigma = features.std(dim=-1, unbiased=False).min().item()
        head = model.frame_skips[stage]
        row_l1 = (head.proj.weight.abs() * head.layernorm.weight.abs()).sum(dim=1).max().item()
        bound += row_l1 * 2 * delta / sigma
    assert (lean - standard).abs().max().item() <= bound


def test_training_reaches_the_skip_heads_from_zero():
    torch.manual_seed(0)
    model = DassForAudioFrameClassification(
        tiny_config(frame_skip_stages=[1, 2], problem_type="multi_label_classification")
    ).train()
    out = model(torch.randn(2, 96, MEL), labels=(torch.rand(2, 24, 5) > 0.5).float())
    out.loss.backward()
    for stage in ("1", "2"):
        assert model.frame_skips[stage].proj.weight.grad.abs().sum() > 0
        assert model.frame_skips[stage].proj.bias.grad.abs().sum() > 0


def test_the_timeline_shows_the_frame_models_scores():
    model = skip_model(problem_type="multi_label_classification")
    classifier = classifier_twin(model)
    inputs = torch.randn(203, MEL)
    with torch.no_grad():
        expected = model(inputs[None]).logits[0].sigmoid().numpy()
    timeline = frame_scores(classifier, inputs, show_progress=False)
    np.testing.assert_allclose(timeline.scores, expected, rtol=0, atol=1e-6)
    assert timeline.times.shape == (expected.shape[0], 2)


def test_pooled_stage_outputs_are_the_stages_frequency_means():
    torch.manual_seed(0)
    model = DassModel(tiny_config()).eval()
    inputs = torch.randn(2, 150, MEL)
    with torch.no_grad():
        out = model(inputs, output_hidden_states=True, pooled_stages=(0, 2), inference_mode="standard")
        lean = model(inputs, pooled_stages=(0, 2), inference_mode="lean")
        assert model(inputs).pooled_stage_outputs is None
    for pooled, lean_pooled, stage in zip(out.pooled_stage_outputs, lean.pooled_stage_outputs, (0, 2)):
        torch.testing.assert_close(pooled, out.hidden_states[stage + 1].mean(dim=2).transpose(1, 2))
        torch.testing.assert_close(lean_pooled, pooled, atol=LEAN_TOL, rtol=0)
    with pytest.raises(ValueError, match="stage indices"):
        model(inputs, pooled_stages=(4,))


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(frame_skip_stages=[3]), "below the last stage"),
        (dict(frame_skip_stages=[2, 1]), "increasing order"),
        (dict(frame_skip_stages=[1, 1]), "distinct"),
        (dict(frame_skip_stages=[True]), "stage indices"),
        (dict(frame_skip_stages=[-1]), "stage indices"),
        (dict(frame_skip_stages=[2], frame_upsampling=1), "raise `frame_upsampling`"),
    ],
)
def test_bad_skip_stages_are_refused_with_the_rule(settings, message):
    with pytest.raises(ValueError, match=message):
        DassConfig(**{**dict(dims=[8, 16, 24, 32], depths=[1, 1, 1, 1]), **settings})


def test_configs_without_skips_have_no_heads():
    assert DassForAudioClassification(tiny_config()).frame_skips is None
    assert DassConfig().frame_skip_stages == []
