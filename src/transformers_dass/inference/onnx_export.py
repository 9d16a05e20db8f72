"""Export a `DassForAudioClassification` to an ONNX graph that ONNX Runtime runs at any number of frames.

    from transformers_dass.inference.onnx_export import export_onnx
    export_onnx("path/to/model", "dass.onnx")          # or `dass export --format onnx --model DIR --output FILE`

The graph:
- input `input_values` (batch, frames, num_mel_bins) float32, normalised fbank features from `DassFeatureExtractor`;
  batch and frames are dynamic axes (any frames >= 1);
- output `logits` (batch, num_labels): the clip scores the PyTorch model returns for that input with its own
  `config.clip_pooling`: for "auto" the graph computes both readouts and takes, for each input, the mean up to
  `config.training_length_frames` frames and the max beyond, as `forward` does;
- output `frame_logits` (batch, time_steps, num_labels), time_steps = ceil(frames / 32), as `return_frame_logits=True`.

It is traced with `torch.onnx.export(..., dynamo=True)` from the standard (not the memory-lean) forward, with the
"chunked" scan backend (`ops/chunked.py`), whose recurrence is written into the graph by
`ops/onnx_translation.py` with every size computed from the input's shape. PyTorch's lean path (taken by itself from
`config.lean_threshold_frames` frames in inference) computes the same outputs; both agree with the graph within float32
rounding. Optimum's ONNX exporter is not used: its current release (optimum-onnx 0.1.0) requires transformers < 4.58.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch
from torch import nn

from ..model.readout import pool_frame_logits
from ..utils.optional import install_hint, require

INSTALL_HINT = install_hint("onnx")
INPUT_NAME = "input_values"
OUTPUT_NAMES = ("logits", "frame_logits")
EXPORT_BACKEND = "chunked"
# The clip readouts the graph computes (config.clip_pooling); linear_softmax and attention are not exported yet.
EXPORTED_POOLINGS = ("auto", "mean", "max")
# Traced with two clips of this many frames: more than one of each size, so that no axis is specialised to 1.
_TRACE_BATCH, _TRACE_FRAMES = 2, 300

__all__ = ["export_onnx", "OnnxExportError", "INSTALL_HINT"]


class OnnxExportError(ValueError):
    """The model cannot be exported as asked; the message names why and the fix."""


class ExportableClassifier(nn.Module):
    """`DassForAudioClassification` as the ONNX graph computes it: (batch, frames, bins) -> (logits, frame_logits).

    The clip readout is chosen per input from its length inside the graph (a tracer cannot branch on a dynamic
    length), with `readout.pool_frame_logits` and `readout.resolve_clip_pooling`'s rule.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        config = model.config
        self.pooling = config.clip_pooling
        self.training_frames = config.training_length_frames

    def forward(self, input_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = self.model(
            input_values, return_frame_logits=True, clip_pooling="mean", inference_mode="standard", return_dict=True
        )
        mean, frame_logits = output.logits, output.frame_logits
        if self.pooling == "mean":
            return mean, frame_logits
        maximum = pool_frame_logits(frame_logits, "max")
        if self.pooling == "max":
            return maximum, frame_logits
        # "auto": resolve_clip_pooling's rule (mean up to the training length, max beyond) on a length held as a
        # tensor. A float32 count of ones is exact up to 2**24 frames (46 hours).
        frames = torch.ones_like(input_values[:, :, 0]).sum(dim=1, keepdim=True)
        return torch.where(frames <= self.training_frames, mean, maximum), frame_logits


@contextlib.contextmanager
def _scan_backend(model: nn.Module, backend: str):
    """Every SS2D mixer of `model` on `backend` for the duration (each keeps its own copy of the config's)."""
    mixers = [module for module in model.modules() if hasattr(module, "scan_backend")]
    saved = [mixer.scan_backend for mixer in mixers]
    try:
        for mixer in mixers:
            mixer.scan_backend = backend
        yield
    finally:
        for mixer, name in zip(mixers, saved):
            mixer.scan_backend = name


def _require_onnx_packages() -> None:
    for name in ("onnx", "onnxscript"):
        require(name, "onnx", "ONNX export")


def _load(model_or_dir):
    from ..model.modeling_dass import DassForAudioClassification

    if isinstance(model_or_dir, (str, os.PathLike)):
        from .loading import load_model_and_extractor

        return load_model_and_extractor(str(model_or_dir))[0]
    if not isinstance(model_or_dir, DassForAudioClassification):
        raise TypeError(
            f"export_onnx takes a DassForAudioClassification or the folder of one, got {type(model_or_dir).__name__}"
        )
    return model_or_dir


def export_onnx(model_or_dir, output_path, *, opset: int | None = None, optimize: bool = True) -> Path:
    """Write the ONNX graph of a DASS classifier (see the module docstring for its inputs and outputs).

    Args:
        model_or_dir: a float32 `DassForAudioClassification`, or a model folder / Hub id (`dass convert` output).
        output_path: the .onnx file to write (its folder is created); weights are stored inside it.
        opset: ONNX opset version; default: the exporter's (at least 18, which the scan's operators need).
        optimize: let the exporter fold constants and remove redundant nodes.

    Returns:
        The path written.

    Raises:
        ImportError: onnx or onnxscript is not installed (`pip install "transformers-dass[onnx]"`).
        ModelFolderError: the folder cannot be loaded. OnnxExportError: the model is not float32, reads clips out
        with a readout the graph lacks (linear_softmax, attention) or the opset is below 18.
    """
    _require_onnx_packages()
    from ..ops.onnx_translation import onnx_translation_table

    if opset is not None and opset < 18:
        raise OnnxExportError(f"opset {opset} is too old: the scan's graph uses opset 18 operators; pass opset >= 18")
    model = _load(model_or_dir)
    dtype = next(model.parameters()).dtype
    if dtype != torch.float32:
        raise OnnxExportError(f"the model's weights are {dtype}; export a float32 model (call `model.float()` first)")
    if model.config.clip_pooling not in EXPORTED_POOLINGS:
        raise OnnxExportError(
            f"the graph reads clips out with {EXPORTED_POOLINGS}, this model with config.clip_pooling="
            f"{model.config.clip_pooling!r}: set `model.config.clip_pooling = 'max'` (or 'mean') before exporting; "
            "its frame_logits are exported unchanged, its clip logits are then that readout's"
        )
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.randn(_TRACE_BATCH, _TRACE_FRAMES, model.config.num_mel_bins)
    dynamic = torch.export.Dim.DYNAMIC
    was_training = model.training
    model.eval()
    try:
        with _scan_backend(model, EXPORT_BACKEND), torch.no_grad():
            program = torch.onnx.export(
                ExportableClassifier(model).eval(),
                (example,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes=({0: dynamic, 1: dynamic},),
                custom_translation_table=onnx_translation_table(),
                opset_version=opset,
                optimize=optimize,
                verbose=False,
            )
    finally:
        model.train(was_training)
    _check_dynamic_axes(program.model)
    program.save(str(output_path))
    return output_path


def _check_dynamic_axes(graph_model) -> None:
    """Refuse a graph whose batch or frames axis came out fixed (a silent specialisation would fail at other sizes)."""
    (value,) = [v for v in graph_model.graph.inputs if v.name == INPUT_NAME]
    fixed = [axis for axis, size in zip(("batch", "frames"), value.shape[:2]) if isinstance(size, int)]
    if fixed:
        raise OnnxExportError(
            f"the exported graph has a fixed {' and '.join(fixed)} axis ({value.shape}); this is a bug, please report it"
        )
