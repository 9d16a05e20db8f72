"""The cross selective scan with a structure fixed at trace time, for graphs with a dynamic length (ONNX export).

`reference.linear_recurrence` picks its recursion from the sequence length (a chunk or more, how many levels),
so a traced graph (`torch.export`, `torch.onnx.export`) holds only the branches of the length it was traced at.
Here the same arithmetic runs in a shape that does not depend on the length:

- every level pads its sequence to a multiple of `CHUNK` and scans each chunk in parallel with the reference's
  doubling scan (`log2(CHUNK)` passes, products of decays in [0, 1], so stable for any decay);
- the chunk-end states are scanned the same way, `LEVELS` times in all;
- the remaining short sequence (`ceil(L / CHUNK**LEVELS)` states: 1 up to 4,096 positions, 12 at 6,000 frames,
  118 at 60,000 frames in the first stage) is solved in closed form: h_m = sum_{j<=m} exp(S[m, j]) drive_j, with
  S[m, j] the sum of the log decays after j up to m (all <= 0, summed without cancellation, so no overflow).

So it works for any length, in O(L log CHUNK) work plus O(M^2) for the M top-level states. Under `torch.export`
the recurrence is one opaque operator (`linear_recurrence_op`), which `onnx_translation.py` writes out as this
same algorithm in ONNX operators, its sizes computed in the graph (tracing the PyTorch code itself would make the
tracer reason about, and guard on, the size arithmetic of every level).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .reference import (
    _prefix_scan,
    cross_selective_scan_reference,
    selective_scan_reference,
)

CHUNK = 64
LEVELS = 2


def _closed_form_recurrence(decay: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
    """Solve h_t = decay_t * h_{t-1} + drive_t (h_{-1} = 0) along the last dim as one masked matrix product.

    For short sequences (it takes (..., M, M) memory): any M, no branch on it.

    Args:
        decay: (..., M) in [0, 1]; drive: (..., M).
    Returns:
        h: (..., M).
    """
    length = decay.shape[-1]
    # Decays that underflowed to 0 become the smallest normal float: log stays finite (so do its gradients), and
    # a product with that factor is below any state's rounding.
    log_decay = torch.log(decay.clamp_min(torch.finfo(decay.dtype).tiny))
    steps = torch.arange(length, device=decay.device)
    after = steps[:, None] > steps[None, :]  # [k, j]: step k comes after j
    reached = steps[:, None] >= steps[None, :]  # [m, j]: state m sees the drive of step j
    terms = torch.where(after, log_decay.unsqueeze(-1), 0.0)  # (..., k, j) = log decay_k for k > j
    segment_sums = terms.cumsum(-2)  # (..., m, j) = sum over j < k <= m
    weights = torch.where(reached, segment_sums.exp(), 0.0)
    return (weights * drive.unsqueeze(-2)).sum(-1)  # not a matmul: its decomposition branches on sizes of 1


def linear_recurrence_chunked(
    decay: torch.Tensor, drive: torch.Tensor, chunk: int = CHUNK, levels: int = LEVELS
) -> torch.Tensor:
    """Solve h_t = decay_t * h_{t-1} + drive_t (h_{-1} = 0) along the last dim, by the same chunked doubling scan as
    `reference.linear_recurrence` but with a fixed number of levels (`levels` scans of chunks, then the closed
    form), so that no Python branch depends on the length.

    Args:
        decay, drive: (..., T), same shape, T >= 1; decay in [0, 1].
        chunk: chunk length of every level; `levels`: how many levels of chunks before the closed form.
    Returns:
        h: (..., T).
    """
    length = decay.shape[-1]
    # Sizes written so that a tracer sees chunks * chunk, not a length it would have to prove divisible.
    chunks = (length + chunk - 1) // chunk
    pad = chunks * chunk - length
    decay = F.pad(decay, (0, pad), value=1.0).unflatten(-1, (chunks, chunk))
    drive = F.pad(drive, (0, pad)).unflatten(-1, (chunks, chunk))
    cum_decay, local = _prefix_scan(decay, drive)  # (..., chunks, chunk) each chunk from a zero state
    if levels > 1:
        chunk_end = linear_recurrence_chunked(cum_decay[..., -1], local[..., -1], chunk, levels - 1)
    else:
        chunk_end = _closed_form_recurrence(cum_decay[..., -1], local[..., -1])
    # Shifts and crops by (negative) padding: sizes a tracer can follow exactly, where a slice would be a minimum.
    carry_in = F.pad(chunk_end, (1, -1)).unsqueeze(-1)
    states = torch.addcmul(local, cum_decay, carry_in).flatten(-2)
    return F.pad(states, (0, -pad))


@torch.library.custom_op("dass_export::linear_recurrence", mutates_args=())
def linear_recurrence_op(decay: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
    """`linear_recurrence_chunked` as one opaque operator, for export: a tracer records it as a single node of the
    input's shape, instead of following (and guarding on) the size arithmetic of its levels, and the ONNX exporter
    writes it out as `onnx_translation.linear_recurrence_onnx`, the same algorithm in ONNX operators."""
    return linear_recurrence_chunked(decay, drive)


@linear_recurrence_op.register_fake
def _linear_recurrence_fake(decay: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(decay)


def _recurrence_for_this_call(decay: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
    """The opaque operator while `torch.export` traces (it has no autograd formula), the PyTorch code otherwise."""
    if torch.compiler.is_exporting():
        return linear_recurrence_op(decay, drive)
    return linear_recurrence_chunked(decay, drive)


def selective_scan_chunked(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True) -> torch.Tensor:
    """`reference.selective_scan_reference` (same arguments, shapes and result) solved by
    `linear_recurrence_chunked`."""
    return selective_scan_reference(
        u, delta, A, B, C, D, delta_bias, delta_softplus, recurrence=_recurrence_for_this_call
    )


def cross_selective_scan_chunked(
    x: torch.Tensor,
    x_proj_weight: torch.Tensor,
    dt_proj_weight: torch.Tensor,
    dt_proj_bias: torch.Tensor,
    A_log: torch.Tensor,
    D: torch.Tensor,
) -> torch.Tensor:
    """SS2D core with the export-friendly scan; same contract as `cross_selective_scan_reference`:
    x (B, D, H, W) -> (B, D, H, W) float32."""
    return cross_selective_scan_reference(x, x_proj_weight, dt_proj_weight, dt_proj_bias, A_log, D, scan=selective_scan_chunked)
