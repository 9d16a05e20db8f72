"""`DassForAudioFrameClassification`: per-step logits on a grid `frame_upsampling` times finer than the 0.32 s
steps, their times, the loss by problem type over the steps that hold audio, the same weights as
`DassForAudioClassification` both ways, the lean path; and the linear-softmax and attention clip readouts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForAudioClassification, AutoModelForAudioFrameClassification

from transformers_dass import DassConfig, DassForAudioClassification, DassForAudioFrameClassification
from transformers_dass.cli import main as cli_main
from transformers_dass.model.readout import pool_frame_logits, read_out, upsample_frame_logits
from transformers_dass.model.steps import num_steps, step_times, steps_holding_audio

from .conftest import require_fixture
from .test_lean_inference import TOL as LEAN_TOL
from .tolerances import gamma

MEL = 24


def tiny_config(**kwargs) -> DassConfig:
    defaults = dict(dims=[8, 16, 24, 32], depths=[1, 1, 1, 1], num_labels=5, drop_path_rate=0.0, num_mel_bins=MEL)
    return DassConfig(**{**defaults, **kwargs})


def frame_model(**kwargs) -> DassForAudioFrameClassification:
    torch.manual_seed(0)
    return DassForAudioFrameClassification(tiny_config(**kwargs)).eval()


def classifier_twin(model: DassForAudioFrameClassification) -> DassForAudioClassification:
    """A `DassForAudioClassification` with the frame model's config and weights."""
    classifier = DassForAudioClassification(model.config).eval()
    classifier.load_state_dict(model.state_dict())
    return classifier


# ----------------------------------------------------------------------------------------------------------------
# The grid and the interpolation
# ----------------------------------------------------------------------------------------------------------------


def numpy_upsampling(coarse: np.ndarray, frames: int, frames_per_step: int, factor: int) -> np.ndarray:
    """Linear interpolation between the centres of the coarse steps, read at the centres of the fine steps, flat
    beyond the first and last centre: np.interp, one label at a time. coarse (steps, labels)."""
    fine_frames = frames_per_step // factor
    coarse_centres = np.arange(coarse.shape[0]) * frames_per_step + frames_per_step / 2
    fine_centres = np.arange(-(-frames // fine_frames)) * fine_frames + fine_frames / 2
    return np.stack([np.interp(fine_centres, coarse_centres, coarse[:, k]) for k in range(coarse.shape[1])], axis=1)


@pytest.mark.parametrize("frames", [1, 4, 31, 33, 203, 1001])
@pytest.mark.parametrize("factor", [1, 2, 8, 32])
def test_upsampling_is_linear_interpolation_between_step_centres(frames, factor):
    generator = torch.Generator().manual_seed(frames * 100 + factor)
    coarse = torch.randn(2, -(-frames // 32), 3, dtype=torch.float64, generator=generator)
    steps = num_steps(frames, 32 // factor)
    fine = upsample_frame_logits(coarse, factor, steps)
    assert fine.shape == (2, steps, 3) and fine.dtype == torch.float64
    for b in range(2):
        expected = numpy_upsampling(coarse[b].numpy(), frames, 32, factor)
        # float64 on both sides: a weight and two products per value
        np.testing.assert_allclose(fine[b].numpy(), expected, rtol=0, atol=1e-12)


def test_upsampling_refuses_more_steps_than_it_has():
    with pytest.raises(ValueError, match="num_steps"):
        upsample_frame_logits(torch.zeros(1, 2, 3), 8, 17)
    with pytest.raises(ValueError, match="factor"):
        upsample_frame_logits(torch.zeros(1, 2, 3), 0, 1)


def test_fine_step_times_continue_the_coarse_grid():
    model = frame_model()
    assert model.config.frames_per_step == model.frames_per_step == 32 and model.config.fine_step_frames == 4
    times = model.frame_times(203)
    assert times.shape == (51, 2) and times.dtype == torch.float64
    torch.testing.assert_close(times[:3], torch.tensor([[0.0, 0.04], [0.04, 0.08], [0.08, 0.12]], dtype=torch.float64))
    torch.testing.assert_close(times[-1], torch.tensor([2.0, 2.03], dtype=torch.float64))  # cut by the audio
    coarse = model.frame_step_times(203)
    assert coarse.shape == (7, 2)
    # every coarse step is `frame_upsampling` fine steps (the last one as far as the audio goes)
    torch.testing.assert_close(times[::8, 0], coarse[:, 0])
    assert torch.equal(step_times(203, 32), coarse)


def test_a_step_holds_audio_when_it_has_at_least_one_frame_of_the_clip():
    # 4 frames per step: 148 frames fill 37 steps; 149 to 152 need a 38th; 153 a 39th
    mask = steps_holding_audio(torch.tensor([148, 149, 152, 153]), 4, 40)
    assert mask.sum(dim=1).tolist() == [37, 38, 38, 39]
    assert mask[:, :37].all() and not mask[0, 37] and mask[1, 37] and not mask[2, 38] and mask[3, 38]


@pytest.mark.parametrize(
    "value", [0, -8, 3, 64, True, 8.0, "8"], ids=["zero", "negative", "not-a-divisor", "too-large", "bool", "float", "str"]
)
def test_frame_upsampling_must_divide_the_step(value):
    with pytest.raises(ValueError, match=r"frame_upsampling.*\[1, 2, 4, 8, 16, 32\]"):
        tiny_config(frame_upsampling=value)


# ----------------------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [97, 203])
def test_logits_are_the_classifiers_frame_logits_upsampled(frames):
    model = frame_model()
    classifier = classifier_twin(model)
    inputs = torch.randn(2, frames, MEL)
    with torch.no_grad():
        out = model(inputs, return_clip_logits=True)
        reference = classifier(inputs, return_frame_logits=True)
    steps = -(-frames // 4)
    assert out.logits.shape == (2, steps, 5) and len(model.frame_times(frames)) == steps
    assert torch.equal(out.logits, upsample_frame_logits(reference.frame_logits, 8, steps))
    assert torch.equal(out.clip_logits, reference.logits)  # config.clip_pooling ("auto": the mean at 2 s)
    assert model(inputs).clip_logits is None
    loss, logits = model(inputs, labels=torch.zeros(2, steps, 5), return_dict=False)
    assert torch.equal(logits, out.logits) and loss.ndim == 0


def test_factor_one_gives_the_coarse_steps():
    model = frame_model(frame_upsampling=1)
    inputs = torch.randn(1, 203, MEL)
    with torch.no_grad():
        logits = model(inputs).logits
        coarse = classifier_twin(model)(inputs, return_frame_logits=True).frame_logits
    assert torch.equal(logits, coarse)


def bce_by_hand(logits: torch.Tensor, labels: torch.Tensor, lengths: list[int]) -> float:
    """Mean of -(y log s(x) + (1 - y) log(1 - s(x))) over the first lengths[b] steps of each clip, in float64."""
    total, count = 0.0, 0
    for b, length in enumerate(lengths):
        for step in range(length):
            for x, y in zip(logits[b, step].double().tolist(), labels[b, step].tolist()):
                p = 1 / (1 + np.exp(-x))
                total -= y * np.log(p) + (1 - y) * np.log(1 - p)
                count += 1
    return total / count


def test_multi_label_loss_counts_the_steps_that_hold_audio():
    model = frame_model(problem_type="multi_label_classification")
    inputs = torch.randn(2, 203, MEL)
    mask = torch.ones(2, 203, dtype=torch.int32)
    mask[1, 150:] = 0  # clip 1 has 150 frames: steps 0..37 (ceil(150 / 4) = 38)
    labels = (torch.rand(2, 51, 5) > 0.7).float()
    with torch.no_grad():
        out = model(inputs, attention_mask=mask, labels=labels)
        alone = model(inputs[1:, :150]).logits
    torch.testing.assert_close(out.logits[1, :38], alone[0], atol=1e-6, rtol=0)  # each clip as it is alone
    assert out.logits[1, 38:].abs().sum() == 0
    # The loss is a float32 mean of n <= 2 * 51 * 5 terms, each below 10 (logits of order 1): gamma(n) times that
    # bounds its rounding, whatever the order of the sum.
    assert abs(out.loss.item() - bce_by_hand(out.logits, labels, [51, 38])) <= gamma(2 * 51 * 5) * 10
    # what lies beyond the audio does not count
    moved = labels.clone()
    moved[1, 38:] = 1 - moved[1, 38:]
    with torch.no_grad():
        assert model(inputs, attention_mask=mask, labels=moved).loss == out.loss
    # without a mask every step counts
    with torch.no_grad():
        whole = model(inputs, labels=labels)
    assert abs(whole.loss.item() - bce_by_hand(whole.logits, labels, [51, 51])) <= gamma(2 * 51 * 5) * 10


def test_single_label_loss_ignores_minus_100_and_padding():
    model = frame_model(num_labels=4)
    assert model.config.problem_type is None
    inputs = torch.randn(2, 120, MEL)
    mask = torch.ones(2, 120, dtype=torch.int32)
    mask[0, 41:] = 0  # 41 frames: 11 steps
    labels = torch.randint(0, 4, (2, 30))
    labels[1, 5] = -100
    with torch.no_grad():
        out = model(inputs, attention_mask=mask, labels=labels)
    assert model.config.problem_type == "single_label_classification"
    log_probs = out.logits.double().log_softmax(-1)
    kept = [(0, k) for k in range(11)] + [(1, k) for k in range(30) if k != 5]
    expected = -sum(log_probs[b, k, labels[b, k]].item() for b, k in kept) / len(kept)
    assert abs(out.loss.item() - expected) <= gamma(4 * 60) * 10


def test_regression_loss_with_one_label():
    model = frame_model(num_labels=1)
    inputs = torch.randn(1, 64, MEL)
    targets = torch.randn(1, 16)
    with torch.no_grad():
        out = model(inputs, labels=targets)
    assert model.config.problem_type == "regression"
    torch.testing.assert_close(out.loss, ((out.logits[..., 0] - targets) ** 2).mean())


def test_frame_labels_off_the_grid_name_it():
    model = frame_model(problem_type="multi_label_classification")
    with pytest.raises(ValueError, match="frame_times"):
        model(torch.randn(1, 64, MEL), labels=torch.zeros(1, 15, 5))
    with pytest.raises(ValueError, match="hidden states"):
        mask = torch.ones(2, 64, dtype=torch.int32)
        mask[0, 10:] = 0
        model(torch.randn(2, 64, MEL), attention_mask=mask, output_hidden_states=True)


def test_the_loss_trains_the_whole_network():
    model = frame_model(problem_type="multi_label_classification").train()
    out = model(torch.randn(2, 96, MEL), labels=(torch.rand(2, 24, 5) > 0.5).float())
    out.loss.backward()
    assert model.dass.embeddings.conv1.weight.grad.abs().sum() > 0


def test_lean_path_equals_the_standard_path():
    model = frame_model(lean_threshold_frames=100)
    inputs = torch.randn(1, 203, MEL)
    with torch.no_grad():
        standard = model(inputs, inference_mode="standard").logits
        lean = model(inputs, inference_mode="lean").logits
        auto = model(inputs).logits  # eval, no gradients, 203 >= 100 frames: "auto" takes the lean path
        classifier = classifier_twin(model)
        coarse_standard = classifier(inputs, inference_mode="standard", return_frame_logits=True).frame_logits
        coarse_lean = classifier(inputs, inference_mode="lean", return_frame_logits=True).frame_logits
    assert torch.equal(auto, lean)
    coarse_gap = (coarse_lean - coarse_standard).abs().max().item()
    assert coarse_gap <= LEAN_TOL  # the network's own lean tolerance (test_lean_inference)
    # Interpolation is a convex combination of two steps: it cannot widen their gap; each side adds its own
    # rounding of one weight, two products and a sum (gamma(3) of the magnitude, twice).
    bound = coarse_gap + 2 * gamma(3) * coarse_standard.abs().max().item()
    assert (lean - standard).abs().max().item() <= bound


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_a_folder_loads_in_both_classes_with_every_weight(tmp_path, pooling):
    torch.manual_seed(0)
    config = tiny_config(clip_pooling=pooling, problem_type="multi_label_classification")
    classifier = DassForAudioClassification(config)
    classifier.save_pretrained(tmp_path / "classifier")
    frames, info = AutoModelForAudioFrameClassification.from_pretrained(tmp_path / "classifier", output_loading_info=True)
    assert isinstance(frames, DassForAudioFrameClassification)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    for name, tensor in classifier.state_dict().items():
        assert torch.equal(frames.state_dict()[name], tensor), name
    assert ("clip_attention.weight" in frames.state_dict()) == (pooling == "attention")

    frames.save_pretrained(tmp_path / "frames")
    back, info = AutoModelForAudioClassification.from_pretrained(tmp_path / "frames", output_loading_info=True)
    assert isinstance(back, DassForAudioClassification)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert json.loads((tmp_path / "frames" / "config.json").read_text())["auto_map"][
        "AutoModelForAudioFrameClassification"
    ] == "dass_auto.DassForAudioFrameClassification"


def test_the_hub_layout_loads_as_a_frame_model(original_tiny):
    model, info = AutoModelForAudioFrameClassification.from_pretrained(
        require_fixture("hub_tiny"), output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    inputs = original_tiny["input.T200"]
    with torch.no_grad():
        clip = model.eval()(inputs, return_clip_logits=True).clip_logits
    torch.testing.assert_close(clip, original_tiny["logits.T200"], atol=1e-4, rtol=0)  # as test_modeling's parity


# ----------------------------------------------------------------------------------------------------------------
# Clip readouts that localise
# ----------------------------------------------------------------------------------------------------------------


def logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def test_linear_softmax_is_sum_p_squared_over_sum_p():
    z = torch.randn(3, 7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 3
    p = 1 / (1 + np.exp(-z.numpy()))
    expected = logit((p**2).sum(axis=1) / p.sum(axis=1))
    np.testing.assert_allclose(pool_frame_logits(z, "linear_softmax").numpy(), expected, rtol=0, atol=1e-10)


def test_attention_is_the_softmax_weighted_probability():
    generator = torch.Generator().manual_seed(2)
    z = torch.randn(3, 7, 4, dtype=torch.float64, generator=generator) * 3
    a = torch.randn(3, 7, 4, dtype=torch.float64, generator=generator) * 3
    p = 1 / (1 + np.exp(-z.numpy()))
    w = np.exp(a.numpy()) / np.exp(a.numpy()).sum(axis=1, keepdims=True)
    expected = logit((w * p).sum(axis=1))
    np.testing.assert_allclose(pool_frame_logits(z, "attention", a).numpy(), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("pooling", ["linear_softmax", "attention"])
def test_probability_readouts_keep_gradients_where_p_is_near_0_or_1(pooling):
    # float32 frame scores far out: p = sigmoid(-60) is 1e-26, 1 - sigmoid(60) rounds to 0 in float32
    z = torch.tensor([[[-60.0, 60.0], [-70.0, 50.0]]], requires_grad=True)
    a = torch.zeros_like(z)
    clip = pool_frame_logits(z, pooling, a if pooling == "attention" else None)
    assert torch.isfinite(clip).all() and clip[0, 0] < -59 and clip[0, 1] > 49
    F.binary_cross_entropy_with_logits(clip, torch.tensor([[1.0, 0.0]])).backward()
    assert torch.isfinite(z.grad).all()
    # A clamp of p (to [eps, 1 - eps]) would leave both labels without gradient here: the positive one at p ~ 1e-26,
    # the negative one where 1 - p rounds to 0. In log space each keeps d BCE / d clip logit = p - y = -1 or 1
    # (halved by the mean over two labels), passed to the steps that weigh in its readout.
    assert z.grad[0, :, 0].sum() < -0.4 and z.grad[0, :, 1].sum() > 0.4


def test_attention_model_trains_its_head_and_reads_out_with_it():
    torch.manual_seed(0)
    model = DassForAudioClassification(tiny_config(clip_pooling="attention")).train()
    inputs = torch.randn(2, 96, MEL)
    out = model(inputs, labels=torch.tensor([[1.0, 0, 0, 1, 0], [0, 1, 0, 0, 0]]), return_frame_logits=True)
    torch.testing.assert_close(out.logits, pool_frame_logits(out.frame_logits, "attention", out.attention_logits))
    out.loss.backward()
    assert model.clip_attention.weight.grad.abs().sum() > 0
    # every readout from one inference forward, as dass classify reads them
    readouts = read_out(model, inputs, ["mean", "max", "linear_softmax", "attention"])
    with torch.no_grad():
        for pooling in ("linear_softmax", "attention"):
            torch.testing.assert_close(readouts.clip_logits[pooling], model.eval()(inputs, clip_pooling=pooling).logits)


def test_attention_without_the_head_names_the_fix():
    model = DassForAudioClassification(tiny_config()).eval()
    assert model.clip_attention is None
    with pytest.raises(ValueError, match="config.clip_pooling='attention'"):
        model(torch.randn(1, 64, MEL), clip_pooling="attention")


def test_dass_classify_reads_out_with_linear_softmax(converted_tiny, capsys):
    path = str(require_fixture("babble_all.wav"))
    args = ["classify", path, "--model", str(converted_tiny), "--top-k", "2", "--json"]
    assert cli_main(args + ["--clip-pooling", "linear_softmax"]) == 0
    assert {p["clip_pooling"] for p in json.loads(capsys.readouterr().out)} == {"linear_softmax"}
    assert cli_main(args + ["--clip-pooling", "attention"]) == 2  # this model has no attention head
    assert "config.clip_pooling='attention'" in capsys.readouterr().err
