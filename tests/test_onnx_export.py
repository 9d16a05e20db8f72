"""ONNX export: `dass export --format onnx` / `export_onnx` against PyTorch, at lengths seen and not seen at export.

One small model is exported once (through the CLI) for the whole module: the exporter traces every block
symbolically, which takes seconds per block.
"""

from __future__ import annotations


import numpy as np
import pytest
import torch

from transformers_dass import DassConfig, DassForAudioClassification
from transformers_dass.cli import main as cli_main
from transformers_dass.inference.onnx_export import (
    INSTALL_HINT,
    OnnxExportError,
    export_onnx,
)

from .conftest import hide_package

ort = pytest.importorskip("onnxruntime", reason=f"the onnx extra is not installed ({INSTALL_HINT})")
pytest.importorskip("onnxscript", reason=f"the onnx extra is not installed ({INSTALL_HINT})")

# ONNX Runtime and PyTorch evaluate the same float32 network with other kernels and summation orders (and, from
# config.lean_threshold_frames frames, PyTorch takes its lean path and the compiled scan). Each is within the
# network's float32 rounding of the exact (float64) result, and that rounding is below TOL / 10 on these O(1)
# logits (test_modeling.test_float32_rounding_is_far_below_the_parity_tolerance; checked for the graph itself in
# test_graph_is_within_float32_rounding_of_float64 below), so the two agree within TOL, as in test_modeling.
TOL = 1e-4
MEL_BINS = 16


def small_model(**config) -> DassForAudioClassification:
    torch.manual_seed(0)
    defaults = dict(dims=[8, 16], depths=[1, 1], num_labels=3, drop_path_rate=0.0, num_mel_bins=MEL_BINS)
    return DassForAudioClassification(DassConfig(**{**defaults, **config})).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model, session, CLI stdout) of the small model saved to a folder and exported with `dass export`."""
    folder = tmp_path_factory.mktemp("onnx")
    model = small_model()
    model.save_pretrained(folder / "model")
    output = folder / "graphs" / "dass.onnx"
    import contextlib
    import io

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = cli_main(["export", "--format", "onnx", "--model", str(folder / "model"), "--output", str(output)])
    assert code == 0
    return model, ort.InferenceSession(str(output)), stdout.getvalue()


def run_graph(session, input_values: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    logits, frame_logits = session.run(["logits", "frame_logits"], {"input_values": input_values.numpy()})
    return logits, frame_logits


def test_cli_writes_a_graph_with_dynamic_batch_and_frames(exported):
    _, session, stdout = exported
    assert "Wrote" in stdout and "dass.onnx" in stdout
    (graph_input,) = session.get_inputs()
    assert graph_input.name == "input_values" and graph_input.type == "tensor(float)"
    batch, frames, bins = graph_input.shape
    assert isinstance(batch, str) and isinstance(frames, str) and bins == MEL_BINS
    assert [o.name for o in session.get_outputs()] == ["logits", "frame_logits"]


# 1000 and 6000 frames (PyTorch's standard and, from config.lean_threshold_frames = 6000, lean path), lengths the
# trace never saw (it used 300), shorter than every stride, and either side of the training length where
# clip_pooling="auto" switches from the mean to the max.
@pytest.mark.parametrize("frames", [1000, 6000, 1, 7, 1024, 1025, 2345])
def test_graph_equals_pytorch(exported, frames):
    model, session, _ = exported
    inputs = torch.randn(2, frames, MEL_BINS, generator=torch.Generator().manual_seed(frames))
    with torch.no_grad():
        expected = model(inputs, return_frame_logits=True)  # the model as users call it: every setting "auto"
    logits, frame_logits = run_graph(session, inputs)
    assert logits.shape == tuple(expected.logits.shape) and frame_logits.shape == tuple(expected.frame_logits.shape)
    torch.testing.assert_close(torch.from_numpy(logits), expected.logits, atol=TOL, rtol=0)
    torch.testing.assert_close(torch.from_numpy(frame_logits), expected.frame_logits, atol=TOL, rtol=0)


@pytest.mark.parametrize("frames", [1000, 6000])
def test_graph_is_within_float32_rounding_of_float64(exported, frames):
    """The premise of TOL for the graph: its error against the network evaluated in float64 (reference scan)."""
    model, session, _ = exported
    inputs = torch.randn(1, frames, MEL_BINS, generator=torch.Generator().manual_seed(1))
    exact = small_model(scan_backend="reference").double()
    with torch.no_grad():
        expected = exact(inputs.double(), return_frame_logits=True, inference_mode="standard")
    logits, frame_logits = run_graph(session, inputs)
    assert np.abs(logits - expected.logits.numpy()).max() < TOL / 10
    assert np.abs(frame_logits - expected.frame_logits.numpy()).max() < TOL / 10


def test_batch_sizes_other_than_the_trace(exported):
    model, session, _ = exported
    inputs = torch.randn(5, 333, MEL_BINS)
    with torch.no_grad():
        expected = model(inputs).logits
    torch.testing.assert_close(torch.from_numpy(run_graph(session, inputs)[0]), expected, atol=TOL, rtol=0)


def test_bad_format_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["export", "--format", "tflite", "--output", "x.tflite"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err


def test_bad_model_folder_gives_one_line_naming_it(tmp_path, capsys):
    missing = tmp_path / "no_such_model"
    assert cli_main(["export", "--format", "onnx", "--model", str(missing), "--output", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dass export: error:") and str(missing) in err and "does not exist" in err
    assert not (tmp_path / "m.onnx").exists()


def test_missing_onnx_packages_name_the_extra(monkeypatch, tmp_path, capsys):
    hide_package(monkeypatch, "onnxscript")
    with pytest.raises(ImportError, match="onnxscript") as error:
        export_onnx(small_model(), tmp_path / "m.onnx")
    assert INSTALL_HINT in str(error.value)
    assert cli_main(["export", "--format", "onnx", "--output", str(tmp_path / "m.onnx")]) == 2
    assert INSTALL_HINT in capsys.readouterr().err


def test_refuses_what_it_cannot_export(tmp_path):
    with pytest.raises(OnnxExportError, match="float32"):
        export_onnx(small_model().to(torch.bfloat16), tmp_path / "m.onnx")
    with pytest.raises(OnnxExportError, match="opset >= 18"):
        export_onnx(small_model(), tmp_path / "m.onnx", opset=17)
    with pytest.raises(OnnxExportError, match="clip_pooling = 'max'"):
        export_onnx(small_model(clip_pooling="attention"), tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="DassForAudioClassification"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "m.onnx")
