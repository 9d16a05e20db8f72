"""Memory-lean inference for `DassModel`: the same computation, arranged to hold little at once.

The standard forward keeps several full-size activations alive per block (the LayerNorm output, in_proj,
the convolution, the four scan orders, the (batch, 4, L, D) time steps, the MLP's 4x-wide hidden layer, the
residual sum), which for an hour of audio is tens of GB at stage 0. Here, with the block's weights as they are:

- the patch embedding and the downsampling convolutions run on chunks of time columns; each chunk reads
  the input columns its outputs need (its halo), zero columns standing in for the padding at the edges;
- in each block, LN -> in_proj -> depthwise conv -> SiLU runs on time chunks (halo `ssm_conv // 2`) into one
  channels-last buffer; the cross scan overwrites that buffer (`ops.cross_selective_scan_inplace`: no
  scan-order copies, time steps for a slice of channels at a time); out_norm -> out_proj and the MLP run on
  chunks of grid positions and add into the residual stream in place.

So a stage holds its residual stream and one scan buffer (plus the scan's (dt, B, C) projections and
chunk-sized temporaries). Inference only (no autograd, no drop path). `DassModel.forward` takes this path
with `inference_mode="lean"`, or by itself above `config.lean_threshold_frames` in inference.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import cross_selective_scan_inplace
from ..ops.inplace import scratch
from .fused_linear import linear
from .layers import (
    DassBlock,
    DassDownsample,
    DassPatchEmbeddings,
    channels_first,
    channels_last,
)

# Grid positions (batch * height * width) per chunk of the position-wise steps: large enough for efficient
# matrix products, small enough that the MLP's 4x-wide temporaries stay at tens of MB.
POSITION_CHUNK = 4096
# Memory for the time steps of one channel slice of the scan (see `ops.cross_selective_scan_inplace`).
SCAN_SLICE_BYTES = 256 * 2**20


def _spans(total: int, size: int) -> Iterator[tuple[int, int]]:
    """[start, stop) spans of at most `size` covering range(total)."""
    for start in range(0, total, size):
        yield start, min(start + size, total)


def _conv_size(conv: nn.Conv2d, size: int, dim: int) -> int:
    """Output size of `conv` along spatial dim 0 (height) or 1 (width) for an input of `size`."""
    kernel, stride, pad = conv.kernel_size[dim], conv.stride[dim], conv.padding[dim]
    return (size + 2 * pad - kernel) // stride + 1


def _conv_columns(
    conv: nn.Conv2d, read: Callable[[int, int], torch.Tensor], in_width: int, start: int, stop: int
) -> torch.Tensor:
    """Output columns [start, stop) of `conv` applied to a (B, C, H, in_width) map, channels first.

    `read(a, b)` returns the map's columns [a, b); zero columns replace those beyond its edges, as the
    convolution's own zero padding does, so the chunk equals the same columns of the whole convolution.
    """
    if conv.padding_mode != "zeros" or conv.dilation != (1, 1):
        raise NotImplementedError("lean inference handles zero-padded convolutions without dilation only")
    kernel, stride, pad = conv.kernel_size[1], conv.stride[1], conv.padding[1]
    first = start * stride - pad
    last = (stop - 1) * stride - pad + kernel
    inside_first, inside_last = max(first, 0), min(last, in_width)
    columns = F.pad(read(inside_first, inside_last), (inside_first - first, last - inside_last))
    return F.conv2d(columns, conv.weight, conv.bias, conv.stride, (conv.padding[0], 0), groups=conv.groups)


def _columns_per_chunk(batch: int, height: int) -> int:
    return max(1, POSITION_CHUNK // (batch * height))


def embed(embeddings: DassPatchEmbeddings, pixel_values: torch.Tensor) -> torch.Tensor:
    """Patch embedding by time chunks: (B, 1, F, T) -> (B, F/4, T/4, dims[0]) channels last, contiguous."""
    batch, _, height, frames = pixel_values.shape
    conv1, conv2 = embeddings.conv1, embeddings.conv2
    mid_height, mid_width = _conv_size(conv1, height, 0), _conv_size(conv1, frames, 1)
    out_height, out_width = _conv_size(conv2, mid_height, 0), _conv_size(conv2, mid_width, 1)

    def first_conv(start: int, stop: int) -> torch.Tensor:
        hidden = _conv_columns(conv1, lambda a, b: pixel_values[..., a:b], frames, start, stop)
        return channels_first(embeddings.act(embeddings.norm1(channels_last(hidden))))

    out = pixel_values.new_empty((batch, out_height, out_width, conv2.out_channels))
    for start, stop in _spans(out_width, _columns_per_chunk(batch, mid_height)):
        hidden = _conv_columns(conv2, first_conv, mid_width, start, stop)
        out[:, :, start:stop] = embeddings.norm2(channels_last(hidden))
    return out


def downsample(module: DassDownsample, hidden: torch.Tensor) -> torch.Tensor:
    """Stride-2 conv + LayerNorm by time chunks: (B, H, W, C) -> (B, H/2, W/2, C') channels last, contiguous."""
    batch, height, width, _ = hidden.shape
    conv = module.conv
    out = hidden.new_empty((batch, _conv_size(conv, height, 0), _conv_size(conv, width, 1), conv.out_channels))
    for start, stop in _spans(out.shape[2], _columns_per_chunk(batch, height)):
        chunk = _conv_columns(conv, lambda a, b: channels_first(hidden[:, :, a:b]), width, start, stop)
        out[:, :, start:stop] = module.norm(channels_last(chunk))
    return out


def _add_positionwise_(target: torch.Tensor, source: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """target += fn(source), chunk by chunk of grid positions; both contiguous (B, H, W, *), fn position-wise."""
    target_rows = target.view(-1, target.shape[-1])
    source_rows = source.view(-1, source.shape[-1])
    for start, stop in _spans(target_rows.shape[0], POSITION_CHUNK):
        target_rows[start:stop] += fn(source_rows[start:stop])


def _ss2d_input(block: DassBlock, hidden: torch.Tensor, buffers: dict | None = None) -> torch.Tensor:
    """SiLU(depthwise conv(in_proj(LN(hidden)))) by time chunks: (B, H, W, C) -> (B, H, W, inner) contiguous."""
    mixer = block.mixer
    batch, height, width, _ = hidden.shape

    def projected(start: int, stop: int) -> torch.Tensor:
        return channels_first(linear(mixer.in_proj, block.layernorm_before(hidden[:, :, start:stop])))

    out = scratch(buffers, "ss2d", (batch, height, width, mixer.inner_dim), hidden.dtype, hidden.device)
    for start, stop in _spans(width, _columns_per_chunk(batch, height)):
        out[:, :, start:stop] = channels_last(mixer.act(_conv_columns(mixer.conv2d, projected, width, start, stop)))
    return out


def block_(block: DassBlock, hidden: torch.Tensor, buffers: dict | None = None) -> torch.Tensor:
    """One VSS block, x + SS2D(LN(x)) then x + MLP(LN(x)), updating `hidden` (B, H, W, C) in place.

    `buffers`: a dict keeping the large temporaries for the next block of the same size (see `ops.scratch`).
    """
    mixer = block.mixer
    scanned = cross_selective_scan_inplace(
        _ss2d_input(block, hidden, buffers),
        mixer.x_proj_weight,
        mixer.dt_proj_weight,
        mixer.dt_proj_bias,
        mixer.A_log,
        mixer.D,
        backend=mixer.scan_backend,
        slice_bytes=SCAN_SLICE_BYTES,
        position_chunk=POSITION_CHUNK,
        buffers=buffers,
    )
    _add_positionwise_(hidden, scanned, lambda rows: linear(mixer.out_proj, mixer.out_norm(rows)))
    del scanned
    if block.has_mlp:
        _add_positionwise_(hidden, hidden, lambda rows: block.mlp(block.layernorm_after(rows)))
    return hidden


@torch.no_grad()
def lean_forward(
    model: nn.Module,
    pixel_values: torch.Tensor,
    output_hidden_states: bool = False,
    show_progress: bool = False,
    pooled_stages: Sequence[int] = (),
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor, ...]]:
    """The layers of `DassModel` up to (not including) its final LayerNorm, lean.

    Args:
        model: a `DassModel`: only its `embeddings` (`DassPatchEmbeddings`) and `stages` (`DassStage`s) are used.
        pixel_values: (B, 1, F, T) spectrogram image.
        output_hidden_states: also return the channels-first maps `DassModel` returns with it (each kept
            alive until the end: memory grows by their size).
        show_progress: draw a tqdm bar over the blocks and downsamplings.
        pooled_stages: stages whose output (before the downsampling) to return averaged over frequency.

    Returns:
        ((B, H, W, dims[-1]) channels-last features of the last stage, hidden states tuple or None,
        (B, W_s, dims[s]) frequency means of each of `pooled_stages`).
    """
    steps = sum(len(stage.blocks) + (stage.downsample is not None) for stage in model.stages)
    bar = _progress_bar(steps + 1, show_progress)
    hidden = embed(model.embeddings, pixel_values)
    bar.update()
    # The blocks update `hidden` in place, so the embedding's map is copied when it must be returned.
    all_hidden = (channels_first(hidden.clone()),) if output_hidden_states else None
    pooled = ()
    for index, stage in enumerate(model.stages):
        buffers = {}  # the blocks of a stage reuse their temporaries; the next stage's are smaller
        for block in stage.blocks:
            block_(block, hidden, buffers)
            bar.update()
        del buffers
        if index in pooled_stages:
            pooled += (hidden.mean(dim=1),)
        if output_hidden_states:
            all_hidden += (channels_first(hidden),)
        if stage.downsample is not None:
            hidden = downsample(stage.downsample, hidden)
            bar.update()
    bar.close()
    return hidden, all_hidden, pooled


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, show: bool):
    if not show:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="DASS layers", unit="layer")


__all__ = ["lean_forward", "embed", "downsample", "block_"]
