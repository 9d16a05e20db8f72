"""ONNX translation of the export-friendly scan (`chunked.linear_recurrence_op`), for `torch.onnx.export`.

The same algorithm as `chunked.linear_recurrence_chunked`, written in ONNX operators, with every size computed in the
graph from the input's shape: so the exported graph takes any sequence length. Needs `onnxscript` (the `onnx` extra);
imported only by the exporter.
"""

from __future__ import annotations

import numpy as np

from .chunked import CHUNK, LEVELS, linear_recurrence_op

TINY = float(np.finfo(np.float32).tiny)


def onnx_translation_table() -> dict:
    """`custom_translation_table` for `torch.onnx.export(..., dynamo=True)`: the scan operator -> its ONNX form."""
    return {linear_recurrence_op._opoverload: linear_recurrence_onnx}


def linear_recurrence_onnx(decay, drive):
    """ONNX graph of h_t = decay_t * h_{t-1} + drive_t (h_{-1} = 0) along the last axis; float32 (..., T) in and out."""
    from onnxscript import opset18 as op

    return _levels(op, decay, drive, LEVELS)


def _ints(op, *values):
    return op.Constant(value_ints=list(values))


def _levels(op, decay, drive, levels: int):
    """One level of `linear_recurrence_chunked`: pad to chunks of CHUNK, scan each, recurse on the chunk ends."""
    leading = op.Shape(decay, end=-1)
    length = op.Shape(decay, start=-1)  # (1,) int64
    chunks = op.Div(op.Add(length, _ints(op, CHUNK - 1)), _ints(op, CHUNK))
    pad = op.Sub(op.Mul(chunks, _ints(op, CHUNK)), length)
    last_axis = _ints(op, -1)
    pads = op.Concat(_ints(op, 0), pad, axis=0)
    blocks = op.Concat(leading, chunks, _ints(op, CHUNK), axis=0)
    decay = op.Reshape(op.Pad(decay, pads, op.Constant(value_float=1.0), last_axis), blocks)
    drive = op.Reshape(op.Pad(drive, pads, op.Constant(value_float=0.0), last_axis), blocks)
    cum_decay, local = _prefix_scan(op, decay, drive)
    end = _ints(op, CHUNK - 1)
    cum_end = op.Squeeze(op.Slice(cum_decay, end, _ints(op, CHUNK), last_axis), last_axis)
    local_end = op.Squeeze(op.Slice(local, end, _ints(op, CHUNK), last_axis), last_axis)
    if levels > 1:
        chunk_end = _levels(op, cum_end, local_end, levels - 1)
    else:
        chunk_end = _closed_form(op, cum_end, local_end)
    # carry into chunk i: the state at the end of chunk i - 1 (0 for the first)
    carry_in = op.Pad(chunk_end, _ints(op, 1, -1), op.Constant(value_float=0.0), last_axis)
    states = op.Add(local, op.Mul(cum_decay, op.Unsqueeze(carry_in, last_axis)))
    states = op.Reshape(states, op.Concat(leading, _ints(op, -1), axis=0))
    return op.Slice(states, _ints(op, 0), length, last_axis)


def _prefix_scan(op, decay, drive):
    """`reference._prefix_scan` on a last axis of exactly CHUNK: log2(CHUNK) doubling passes."""
    last_axis = _ints(op, -1)
    step = 1
    while step < CHUNK:
        head, tail = (_ints(op, 0), _ints(op, step)), (_ints(op, step), _ints(op, CHUNK))
        shifted = (_ints(op, 0), _ints(op, CHUNK - step))
        drive_tail = op.Add(
            op.Slice(drive, *tail, last_axis),
            op.Mul(op.Slice(decay, *tail, last_axis), op.Slice(drive, *shifted, last_axis)),
        )
        decay_tail = op.Mul(op.Slice(decay, *tail, last_axis), op.Slice(decay, *shifted, last_axis))
        drive = op.Concat(op.Slice(drive, *head, last_axis), drive_tail, axis=-1)
        decay = op.Concat(op.Slice(decay, *head, last_axis), decay_tail, axis=-1)
        step *= 2
    return decay, drive


def _closed_form(op, decay, drive):
    """`chunked._closed_form_recurrence`: h_m = sum_j [j <= m] exp(sum_{j<k<=m} log decay_k) drive_j."""
    log_decay = op.Log(op.Max(decay, op.Constant(value_float=TINY)))
    length = op.Squeeze(op.Shape(decay, start=-1))
    steps = op.Range(op.Constant(value_int=0), length, op.Constant(value_int=1))
    rows, cols = op.Unsqueeze(steps, _ints(op, 1)), op.Unsqueeze(steps, _ints(op, 0))
    zero = op.Constant(value_float=0.0)
    terms = op.Where(op.Greater(rows, cols), op.Unsqueeze(log_decay, _ints(op, -1)), zero)
    segment_sums = op.CumSum(terms, op.Constant(value_int=-2))
    weights = op.Where(op.GreaterOrEqual(rows, cols), op.Exp(segment_sums), zero)
    return op.ReduceSum(op.Mul(weights, op.Unsqueeze(drive, _ints(op, -2))), _ints(op, -1), keepdims=0)
