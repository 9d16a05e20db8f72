"""The memory-lean inference path equals the standard forward; when it is taken; frame logits."""

from __future__ import annotations

import pytest
import torch

import transformers_dass.model.lean_inference as lean_inference
import transformers_dass.model.modeling_dass as modeling_dass
from transformers_dass import DassConfig, DassForAudioClassification, DassModel
from transformers_dass.ops import (
    available_backends,
    cross_selective_scan,
    cross_selective_scan_inplace,
)

BACKENDS = [
    "reference",
    pytest.param(
        "cpu", marks=pytest.mark.skipif("cpu" not in available_backends("cpu"), reason="compiled kernels not built")
    ),
]
# Lean and standard paths do the same float32 arithmetic in other chunkings and orders: the premise and margin of
# test_modeling.TOL (float32 rounding of these networks ~2e-7 on O(1) outputs, measured there on the CPU at hand).
TOL = 1e-4


def tiny_config(**kwargs) -> DassConfig:
    # dims[0] = 48 > 32 so that the scan runs in several channel slices when slices are small.
    defaults = dict(dims=[48, 16, 24, 32], depths=[2, 1, 1, 1], num_labels=5, drop_path_rate=0.0, num_mel_bins=24)
    return DassConfig(**{**defaults, **kwargs})


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks far smaller than the tensors, at odd sizes, so every chunk boundary case is exercised."""
    monkeypatch.setattr(lean_inference, "POSITION_CHUNK", 97)
    monkeypatch.setattr(lean_inference, "SCAN_SLICE_BYTES", 1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("frames", [997, 3001])
def test_lean_path_equals_standard_path(small_chunks, backend, frames):
    torch.manual_seed(0)
    model = DassForAudioClassification(tiny_config(scan_backend=backend)).eval()
    inputs = torch.randn(2, frames, 24)
    with torch.no_grad():
        standard = model(inputs, inference_mode="standard", output_hidden_states=True, return_frame_logits=True)
        lean = model(inputs, inference_mode="lean", output_hidden_states=True, return_frame_logits=True)
    torch.testing.assert_close(lean.logits, standard.logits, atol=TOL, rtol=0)
    torch.testing.assert_close(lean.frame_logits, standard.frame_logits, atol=TOL, rtol=0)
    assert len(lean.hidden_states) == len(standard.hidden_states) == 5
    for got, expected in zip(lean.hidden_states, standard.hidden_states):
        torch.testing.assert_close(got, expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("frames", [1, 2, 33])
def test_lean_path_on_inputs_shorter_than_the_strides(small_chunks, frames):
    torch.manual_seed(0)
    model = DassModel(tiny_config(scan_backend="reference", dims=[8, 16, 24, 32], ssm_conv=5, mlp_ratio=0.0)).eval()
    inputs = torch.randn(1, frames, 24)
    with torch.no_grad():
        standard = model(inputs, inference_mode="standard")
        lean = model(inputs, inference_mode="lean")
    torch.testing.assert_close(lean.last_hidden_state, standard.last_hidden_state, atol=TOL, rtol=0)
    torch.testing.assert_close(lean.pooler_output, standard.pooler_output, atol=TOL, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_inplace_scan_equals_cross_selective_scan(backend):
    torch.manual_seed(1)
    batch, channels, height, width, rank, state = 2, 40, 5, 37, 3, 2
    x = torch.randn(batch, channels, height, width)
    weights = (
        torch.randn(4, rank + 2 * state, channels) * 0.3,  # x_proj_weight
        torch.randn(4, channels, rank) * 0.3,  # dt_proj_weight
        torch.randn(4, channels) * 0.1,  # dt_proj_bias
        torch.randn(4 * channels, state) * 0.3,  # A_log
        torch.randn(4 * channels),  # D
    )
    expected = cross_selective_scan(x, *weights, backend=backend)
    buffer = x.permute(0, 2, 3, 1).contiguous()
    out = cross_selective_scan_inplace(buffer, *weights, backend=backend, slice_bytes=1, position_chunk=50)
    assert out.data_ptr() == buffer.data_ptr()
    torch.testing.assert_close(out.permute(0, 3, 1, 2), expected, atol=1e-4, rtol=1e-6)


def test_auto_mode_takes_the_lean_path_only_in_inference_above_the_threshold(monkeypatch):
    calls = []

    def spy(*args, **kwargs):
        calls.append(args[1].shape[-1])
        return lean_inference.lean_forward(*args, **kwargs)

    monkeypatch.setattr(modeling_dass, "lean_forward", spy)
    model = DassModel(tiny_config(dims=[8, 16, 24, 32], lean_threshold_frames=50)).eval()
    with torch.no_grad():
        model(torch.randn(1, 49, 24))
        model(torch.randn(1, 50, 24))
        model(torch.randn(1, 60, 24), inference_mode="standard")
    assert calls == [50]
    model(torch.randn(1, 60, 24))  # gradients on: standard path
    model.train()
    with torch.no_grad():
        model(torch.randn(1, 60, 24))  # training mode: standard path
    assert calls == [50]
    model.eval()
    model.config.inference_mode = "lean"
    with torch.inference_mode():
        model(torch.randn(1, 10, 24))
    assert calls == [50, 10]


def test_lean_mode_refuses_training_and_autograd():
    model = DassModel(tiny_config(dims=[8, 16, 24, 32])).eval()
    with pytest.raises(ValueError, match="torch.no_grad"):
        model(torch.randn(1, 40, 24), inference_mode="lean")
    model.train()
    with torch.no_grad(), pytest.raises(ValueError, match=r"model.eval\(\)"):
        model(torch.randn(1, 40, 24), inference_mode="lean")
    with pytest.raises(ValueError, match="inference_mode"):
        model(torch.randn(1, 40, 24), inference_mode="fast")


@pytest.mark.parametrize(
    "kwargs", [{"inference_mode": "quick"}, {"lean_threshold_frames": 0}, {"lean_threshold_frames": 1.5}]
)
def test_config_refuses_bad_inference_settings(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        tiny_config(**kwargs)


@pytest.mark.parametrize("frames", [1, 31, 32, 33, 997])
def test_frame_logits_average_to_the_clip_logits(frames):
    torch.manual_seed(0)
    model = DassForAudioClassification(tiny_config(dims=[8, 16, 24, 32])).eval()
    with torch.no_grad():
        out = model(torch.randn(2, frames, 24), return_frame_logits=True)
    steps = -(-frames // 32)  # five stride-2 halvings, each rounding up
    assert out.frame_logits.shape == (2, steps, 5)
    # The head is linear and the clip pooling is the mean over frequency then time, so the time average of
    # the per-step logits must give the clip's logits.
    torch.testing.assert_close(out.frame_logits.mean(dim=1), out.logits, atol=1e-5, rtol=0)
    assert model.frame_step_times(frames).shape == (steps, 2)
    as_tuple = model(torch.randn(1, frames, 24), return_frame_logits=True, return_dict=False)
    assert len(as_tuple) == 2 and as_tuple[1].shape == (1, steps, 5)


def test_frame_step_times_by_hand():
    model = DassForAudioClassification(tiny_config(dims=[8, 16, 24, 32]))
    assert model.frames_per_step == 32
    expected = torch.tensor([[0.0, 0.32], [0.32, 0.64], [0.64, 0.96], [0.96, 1.00]], dtype=torch.float64)
    torch.testing.assert_close(model.frame_step_times(100), expected)
    torch.testing.assert_close(model.frame_step_times(5), torch.tensor([[0.0, 0.05]], dtype=torch.float64))
    with pytest.raises(ValueError, match="num_frames"):
        model.frame_step_times(0)
