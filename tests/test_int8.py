"""The two int8 routes (inference/int8.py), torchao's weights through the block linears, transformers' TorchAoConfig
route on DASS, the fallbacks, and the torchao import lines the package drops.

The accuracy bound of both routes is test_precision.py's (its int8 derivation: per-row weight steps max|row|/127,
activation steps (max - min)/127 per tensor). torchao's symmetric per-token activations have steps 2 max|x_row|/255
<= 2 max|x|/255 < (max - min)/127 whenever min <= 0 <= max (as fbgemm's range always is), so that bound covers them.
"""

from __future__ import annotations

import copy
import logging
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from transformers_dass import DassForAudioClassification
from transformers_dass.inference import int8
from transformers_dass.inference.loading import demo_model_path
from transformers_dass.inference.precision import apply_precision, resolve_dtype
from transformers_dass.model import fused_linear
from transformers_dass.utils.import_noise import silence_torchao_import_noise

from .conftest import hide_package
from .test_modeling import tiny_config
from .test_precision import _int8_rounding, assert_logits_within_rounding_bound

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "seven_in_babble.wav")


def _torchao():
    return pytest.importorskip("torchao.quantization", reason="torchao is the [int8] extra (in dev)")


def _block_linears(model):
    return {name: module for name, module in model.named_modules() if name.endswith(("in_proj", "out_proj", "fc1", "fc2"))}


def test_torchao_route_quantises_the_backbone_linears_only_and_leaves_the_original_alone():
    quantization = _torchao()
    model = DassForAudioClassification(tiny_config()).eval()
    quantized = apply_precision(model, "int8", int8_route="torchao")
    assert quantized is not model
    kinds = {type(m.weight) for m in _block_linears(quantized).values()}
    assert kinds == {quantization.Int8Tensor}
    assert all(type(m) is nn.Linear for m in _block_linears(quantized).values())
    assert type(quantized.classifier.weight) is nn.Parameter  # the head stays float32
    assert {type(m.weight) for m in _block_linears(model).values()} == {nn.Parameter}


def test_torchao_logits_within_the_int8_rounding_bound(monkeypatch):
    _torchao()
    monkeypatch.setattr(int8, "DEFAULT_INT8_ROUTE", "torchao")
    assert int8.default_int8_route() == "torchao"
    assert_logits_within_rounding_bound("int8", _int8_rounding)


def test_torchao_weights_take_the_plain_linear_path():
    quantization = _torchao()
    layer = nn.Linear(64, 32)
    x = torch.randn(5, 64)
    quantization.quantize_(layer, quantization.Int8DynamicActivationInt8WeightConfig(set_inductor_config=False))
    with torch.inference_mode():
        assert not fused_linear._takes_onednn(layer, x)  # oneDNN's op has no Int8Tensor kernel
        torch.testing.assert_close(fused_linear.linear(layer, x, "gelu"), torch.nn.functional.gelu(layer(x)), rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["standard", "lean"])
def test_from_pretrained_with_torchao_config_equals_apply_precision(mode):
    quantization = _torchao()
    from transformers import TorchAoConfig

    config = TorchAoConfig(
        quantization.Int8DynamicActivationInt8WeightConfig(set_inductor_config=False), modules_to_not_convert=["classifier"]
    )
    loaded = DassForAudioClassification.from_pretrained(demo_model_path(), quantization_config=config).eval()
    ours = apply_precision(DassForAudioClassification.from_pretrained(demo_model_path()).eval(), "int8", int8_route="torchao")
    assert type(loaded.dass.stages[0].blocks[0].mlp.fc1.weight) is quantization.Int8Tensor
    x = torch.randn(1, 300, loaded.config.num_mel_bins, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        # The same weights quantised by the same config, the same kernels: the same numbers.
        torch.testing.assert_close(loaded(x, inference_mode=mode).logits, ours(x, inference_mode=mode).logits, rtol=0, atol=0)


def test_route_fallbacks(monkeypatch):
    assert int8.default_int8_route() == int8.DEFAULT_INT8_ROUTE
    monkeypatch.setattr(int8, "_dynamic_available", lambda: False)
    assert int8.default_int8_route() == "torchao"  # a torch without eager quantisation takes torchao
    with pytest.raises(ValueError, match=r"int8 route must be one of \('dynamic', 'torchao'\)"):
        int8.quantize_int8(nn.Linear(2, 2), "int4")


def test_torchao_route_without_torchao_names_the_extra(monkeypatch):
    hide_package(monkeypatch, "torchao")
    with pytest.raises(ModuleNotFoundError, match=r'needs torchao, which is not installed: pip install "transformers-dass\[int8\]"'):
        apply_precision(DassForAudioClassification(tiny_config()).eval(), "int8", int8_route="torchao")


def test_known_torchao_import_lines_are_dropped_and_nothing_else(caplog):
    silence_torchao_import_noise()
    silence_torchao_import_noise()  # idempotent
    assert sum(type(f).__name__ == "_DropKnownNoise" for f in logging.getLogger("torchao").filters) == 1
    with caplog.at_level(logging.WARNING):
        logging.getLogger("torchao").warning("Failed to load /x/site-packages/torchao/_C_mxfp8.cpython-310-x86_64-linux-gnu.so: nope")
        logging.getLogger("torchao").warning("Failed to load /x/site-packages/torchao/_C.abi3.so: a CPU kernel")
        logging.getLogger("torch.utils._pytree").warning(
            "<enum 'KernelPreference'> is an Enum subclass and is now natively supported by torch.compile as an opaque value type."
        )
        logging.getLogger("torch.utils._pytree").warning("<enum 'Other'> is an Enum subclass and is now natively supported by torch.compile")
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "Failed to load /x/site-packages/torchao/_C.abi3.so: a CPU kernel",
        "<enum 'Other'> is an Enum subclass and is now natively supported by torch.compile",
    ]


def test_dass_classify_int8_prints_no_warning():
    """A fresh process with every warning shown once: stderr holds the dtype line alone (no deprecation of torch.ao's
    quantisation, no torchao import lines)."""
    result = subprocess.run(
        [sys.executable, "-W", "default", "-m", "transformers_dass", "classify", EXAMPLE, "--dtype", "int8", "--top-k", "1"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"dass classify: dtype {resolve_dtype('int8')[1]}"]
    assert result.stdout.splitlines()[1].endswith("seven")


def test_copies_are_independent():
    model = DassForAudioClassification(tiny_config()).eval()
    before = copy.deepcopy(model.state_dict())
    apply_precision(model, "int8")
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
