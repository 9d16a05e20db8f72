"""Inference precisions (precision.py): the auto rule, and bf16 / int8 logits against float32 within derived bounds.

How the bounds are derived (forward error analysis, Higham ch. 2-3, in its probabilistic form: Higham & Mary,
"A new approach to probabilistic rounding error analysis", SIAM J. Sci. Comput. 2019):
- bfloat16 keeps 8 significant bits: a rounding to bf16 multiplies a value v by (1 + d), |d| <= u = 2^-8. In the
  bf16 model every operation's output is rounded once to bf16 (matrix products, norms and the scan accumulate in
  float32 inside, whose 2^-24 is negligible next to u), and so is every weight that is cast. To first order a
  logit moves by sum_v (dlogit/dv) v d_v; the gradients come from autograd on the float32 model. The sum counts
  every tensor an operation returns, also exact copies and float32 intermediates, which only loosens the bound.
- int8 (dynamic quantisation of the linears): a weight row is quantised with step max|row| / 127 (error <= step/2),
  an input tensor with step (max - min) / 127 (fbgemm keeps 7 bits for activations; <= step/2; with 8 bits the
  step halves, so this is an upper bound). To first order a logit moves by sum dlogit/dx . dx + dlogit/dW . dW.
- Worst-case signs (the deterministic bound) make these sums useless (tens of logits for a logit range of ~7); as
  in Higham & Mary, the rounding errors are modelled as independent, mean zero, bounded by |c_i| = u |dlogit/dv v|
  (resp. |dlogit/dx| step/2, ...). Hoeffding's inequality then gives P(|sum| >= lambda sqrt(sum c_i^2)) <=
  2 exp(-lambda^2 / 2): lambda = 6 leaves a chance of 3e-8 per logit.
- Second order: each linearised step neglects terms u (or the quantisation's relative error, < 1 %) times smaller
  than its own; over the few dozen operations on a path through the network that stays below 1/2 of the first-order
  term, so the bound is taken 1.5x (plus float32's own 1e-5 relative noise of the reference).
"""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch
from torch.overrides import TorchFunctionMode

from transformers_dass import DassForAudioClassification
from transformers_dass.inference.loading import demo_model_path
from transformers_dass.inference.precision import (
    DTYPE_CHOICES,
    CpuCapabilities,
    _keeps_float32,
    apply_precision,
    cpu_capabilities,
    resolve_dtype,
)

from .test_modeling import tiny_config

BF16_U = 2.0**-8
SECOND_ORDER_SLACK = 1.5
HOEFFDING_LAMBDA = 6.0
FLOAT32_NOISE = 1e-5  # relative to the largest logit: float32 differences between CPUs/threads, far above 2^-24 * depth

AMD_AVX2 = CpuCapabilities(avx512_bf16=False, amx_bf16=False)
AVX512_NO_BF16 = CpuCapabilities(avx512_bf16=False, amx_bf16=False)
ZEN4_ZEN5 = CpuCapabilities(avx512_bf16=True, amx_bf16=False)
XEON_AMX = CpuCapabilities(avx512_bf16=True, amx_bf16=True)


@pytest.mark.parametrize(
    "capabilities, expected, why",
    [
        (AMD_AVX2, "float32", "no native bf16"),
        (AVX512_NO_BF16, "float32", "no native bf16"),
        (ZEN4_ZEN5, "bfloat16", "AVX512-BF16"),
        (XEON_AMX, "bfloat16", "AMX-BF16"),
        (CpuCapabilities(avx512_bf16=True, amx_bf16=True, onednn=False), "float32", "no oneDNN"),
        (CpuCapabilities(avx512_bf16=True, isa_cap="AVX512_CORE"), "float32", "ONEDNN_MAX_CPU_ISA=AVX512_CORE"),
        (CpuCapabilities(avx512_bf16=True, isa_cap="avx512_core_bf16"), "bfloat16", "AVX512-BF16"),
    ],
)
def test_auto_takes_bfloat16_only_where_the_cpu_has_it(capabilities, expected, why):
    choice, reason = resolve_dtype("auto", capabilities=capabilities)
    assert choice == expected and reason.startswith(f"{expected}: ") and why in reason


def test_explicit_choices_are_kept_and_say_what_they_cost():
    assert resolve_dtype("float32", capabilities=XEON_AMX)[0] == "float32"
    assert resolve_dtype("int8", capabilities=AMD_AVX2)[0] == "int8"
    choice, reason = resolve_dtype("bfloat16", capabilities=AMD_AVX2)
    assert choice == "bfloat16" and "emulated" in reason
    with pytest.raises(ValueError, match="must be one of"):
        resolve_dtype("fp16")
    with pytest.raises(ValueError, match="resolve 'auto'"):
        apply_precision(torch.nn.Linear(2, 2), "auto")
    assert DTYPE_CHOICES == ("auto", "float32", "bfloat16", "int8")


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="needs Linux's /proc/cpuinfo as the independent source")
def test_detection_agrees_with_the_kernel_cpu_flags():
    flags = set()
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    detected = cpu_capabilities()
    assert detected.avx512_bf16 == ("avx512_bf16" in flags)
    assert detected.amx_bf16 == ({"amx_tile", "amx_bf16"} <= flags)


class _RecordOutputs(TorchFunctionMode):
    """Keeps every new (non-view) floating-point tensor an operation returns, with its gradient retained."""

    def __init__(self):
        super().__init__()
        self.outputs = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor) and out.is_floating_point() and out.requires_grad and not out._is_view():
            out.retain_grad()
            self.outputs.append(out)
        return out


def _model_and_input(frames: int = 128):
    """The bundled demo model (trained weights) and a random clip; reference scan so that autograd runs anywhere."""
    torch.manual_seed(0)
    model = DassForAudioClassification.from_pretrained(demo_model_path(), scan_backend="reference").eval()
    return model, torch.randn(1, frames, model.config.num_mel_bins)


def _first_order_bound(model, input_values, perturbation, labels) -> torch.Tensor:
    """(len(labels),) first-order scale of each logit's change; `perturbation(model, run)` returns, after a forward,
    a function of the backward's gradients that gives the sum of |dlogit/dv| . |dv| over what the precision rounds."""
    run = {}
    logits, measure = perturbation(model, input_values, run)
    bounds = []
    for label in labels:
        model.zero_grad()
        for tensor in run.get("outputs", ()):
            tensor.grad = None
        logits[0, label].backward(retain_graph=True)
        bounds.append(measure())
    return torch.stack(bounds)


def _bf16_rounding(model, input_values, run):
    cast = [p for n, p in model.named_parameters() if not _keeps_float32(model, n)]
    with _RecordOutputs() as recorder:
        logits = model(input_values).logits
    run["outputs"] = recorder.outputs

    def measure():
        # One rounding per element of every op output and of every cast weight, coefficient |dlogit/dv . v| u.
        squares = sum(((t.grad * t) ** 2).sum() for t in recorder.outputs if t.grad is not None)
        squares = squares + sum(((p.grad * p) ** 2).sum() for p in cast if p.grad is not None)
        return BF16_U * squares.sqrt()

    return logits, measure


def _int8_rounding(model, input_values, run):
    linears = [
        m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and not name.startswith("classifier")
    ]
    seen = []

    def hook(module, inputs, output):
        inputs[0].retain_grad()
        seen.append((module, inputs[0]))

    handles = [m.register_forward_hook(hook) for m in linears]
    logits = model(input_values).logits
    for handle in handles:
        handle.remove()
    run["outputs"] = [x for _, x in seen]

    def measure():
        # Per input element: |dlogit/dx| times half the tensor's step; per weight (shared by all positions):
        # |dlogit/dW| times half its row's step.
        squares = 0.0
        for module, x in seen:
            w = module.weight.detach()
            x_error = (x.max() - x.min()).detach() / 127 / 2
            w_error = w.abs().amax(dim=1, keepdim=True) / 127 / 2
            squares = squares + (x.grad**2).sum() * x_error**2 + ((module.weight.grad * w_error) ** 2).sum()
        return squares.sqrt()

    return logits, measure


@pytest.mark.parametrize("precision, perturbation", [("bfloat16", _bf16_rounding), ("int8", _int8_rounding)])
def test_low_precision_logits_within_rounding_bound(precision, perturbation):
    assert_logits_within_rounding_bound(precision, perturbation)


def assert_logits_within_rounding_bound(precision, perturbation):
    """`apply_precision(model, precision)`'s logits within the first-order rounding bound of `perturbation`, on the
    standard and the lean path (the tiny model of `_model_and_input`); also used for int8's other route."""
    model, x = _model_and_input()
    with torch.no_grad():
        reference = model(x).logits[0]
    # The two best labels and the worst: the ranking that matters, and the far end of the logits' range.
    order = reference.argsort(descending=True)
    labels = [int(order[0]), int(order[1]), int(order[-1])]
    scale = _first_order_bound(model, x, perturbation, labels).detach()
    allowed = HOEFFDING_LAMBDA * SECOND_ORDER_SLACK * scale + FLOAT32_NOISE * reference.abs().max()
    low = apply_precision(copy.deepcopy(model), precision)
    # The lean path runs the same operations on chunks: the same roundings (int8: a chunk's input range is at most
    # the whole tensor's, so the bound from whole tensors covers it).
    for mode in ("standard", "lean"):
        with torch.inference_mode():
            logits = low(x, inference_mode=mode).logits[0]
        assert logits.dtype == torch.float32  # the head stays float32
        error = (logits[labels] - reference[labels]).abs()
        assert (error <= allowed).all(), f"{precision} ({mode}): error {error.tolist()} > allowed {allowed.tolist()}"
    # The bound must be tight enough to catch a real bug: well below the logits' spread.
    assert allowed.max() < 0.25 * (reference.max() - reference.min())


def test_bfloat16_keeps_scan_parameters_and_head_in_float32_as_from_pretrained_does(tmp_path):
    model = DassForAudioClassification(tiny_config()).eval()
    model.save_pretrained(tmp_path)
    loaded = DassForAudioClassification.from_pretrained(tmp_path, dtype=torch.bfloat16)
    cast = apply_precision(copy.deepcopy(model), "bfloat16")
    loaded_dtypes = {n: p.dtype for n, p in loaded.named_parameters()}
    assert loaded_dtypes == {n: p.dtype for n, p in cast.named_parameters()}
    kept = {n for n, d in loaded_dtypes.items() if d == torch.float32}
    assert kept and all(n.split(".")[-1] in ("A_log", "D", "dt_proj_bias") or n.startswith("classifier.") for n in kept)
    assert loaded.dass.stages[0].blocks[0].mlp.fc1.weight.dtype == torch.bfloat16


def test_int8_quantises_the_backbone_linears_only_and_leaves_the_original_alone():
    model = DassForAudioClassification(tiny_config()).eval()
    quantized = apply_precision(model, "int8")
    kinds = {type(m) for n, m in quantized.named_modules() if n.endswith(("in_proj", "out_proj", "fc1", "fc2"))}
    assert kinds == {torch.ao.nn.quantized.dynamic.Linear}
    assert isinstance(quantized.classifier, torch.nn.Linear) and type(model.dass.stages[0].blocks[0].mlp.fc1) is torch.nn.Linear


@pytest.mark.parametrize("dtype", ["auto", "bfloat16", "int8"])
def test_cli_says_which_dtype_it_took_and_scores_with_that_model(dtype, capsys):
    from transformers_dass.audio.io import load_audio
    from transformers_dass.cli import main
    from transformers_dass.inference.classify import classify_waveform
    from transformers_dass.inference.loading import load_model_and_extractor

    path = os.path.join(os.path.dirname(__file__), "..", "examples", "seven_in_babble.wav")
    assert main(["classify", path, "--top-k", "3", "--json", "--dtype", dtype]) == 0
    captured = capsys.readouterr()
    choice, reason = resolve_dtype(dtype)
    assert captured.err == f"dass classify: dtype {reason}\n"
    model, extractor = load_model_and_extractor(demo_model_path())
    model = apply_precision(model.eval(), choice)
    expected = classify_waveform(model, extractor, load_audio(path, sampling_rate=16000), top_k=3)
    assert json.loads(captured.out) == expected
