"""The SS2D core for memory-lean inference: one channels-last tensor in, the scan's output written over it.

`cross_selective_scan_inplace` computes what `cross_selective_scan` computes, without the four scan-order
copies (the channels-last contract of the compiled kernels walks the orders itself) and without the
(batch, 4, L, D) time-step tensor of the whole grid: the scan is independent per channel, so it runs on
slices of channels, each needing only its own slice of the time steps. The per-direction (dt, B, C)
projections mix all channels, so they are computed first, for every position, in chunks of positions.
Inference only: no autograd through the in-place writes.

Notation as in `reference.py`: B batch, K = 4 directions, D channels, N state size, R time-step rank,
L = H * W grid positions in row-major order.
"""

from __future__ import annotations

import math

import torch

from .dispatch import resolve_backend
from .reference import NUM_DIRECTIONS, cross_scan_channels_last_reference

# Bytes of the per-slice time-step tensor (batch, 4, L, channels), float32: sets the channel slice width.
DEFAULT_SLICE_BYTES = 256 * 2**20
# Grid positions per projection chunk.
DEFAULT_POSITION_CHUNK = 16384
# Channel slices are multiples of this (the CPU kernel's narrow channel group) and, where the tensor has them,
# at least two of them wide, so that the kernel's (batch, channel block) work items feed two threads.
_CHANNEL_QUANTUM = 16


def cross_scan_channels_last(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    delta_bias: torch.Tensor,
    height: int,
    width: int,
    backend: str = "auto",
) -> torch.Tensor:
    """The fused four-direction scan in the kernels' channels-last layout, through the chosen backend.

    Shapes and semantics of `reference.cross_scan_channels_last_reference`: u (B, L, D), delta (B, 4, L, D),
    A (4, D, N), B and C (B, 4, L, N), D and delta_bias (4, D), all float32 and contiguous -> (B, L, D)
    float32. The compiled kernels ("cpu", "cuda") run it directly; the other backends ("reference", and
    "mamba_ssm", whose scan takes one direction per row) use the PyTorch reference of this contract.
    """
    name = resolve_backend(backend, u.device)
    if name in ("cpu", "cuda"):
        return torch.ops.dass.cross_scan_fwd(u, delta, A, B, C, D, delta_bias, height, width)
    return cross_scan_channels_last_reference(u, delta, A, B, C, D, delta_bias, height, width)


def scratch(
    buffers: dict | None, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """An uninitialised contiguous tensor of `shape`.

    With a `buffers` dict, the memory kept there under `name` is reused (and replaced by a larger one when too
    small). Large fresh allocations come from the OS page by page on first touch, which costs about as much
    as the arithmetic of a cheap step, so loops over blocks keep reusing the same buffers.
    """
    numel = math.prod(shape)
    if buffers is None:
        return torch.empty(shape, dtype=dtype, device=device)
    flat = buffers.get(name)
    if flat is None or flat.numel() < numel or flat.dtype != dtype or flat.device != device:
        buffers.pop(name, None)  # free the old one before allocating its replacement
        flat = buffers[name] = torch.empty(numel, dtype=dtype, device=device)
    return flat[:numel].view(shape)


def channel_slice_width(channels: int, batch: int, length: int, slice_bytes: int = DEFAULT_SLICE_BYTES) -> int:
    """Channels per scan call so that its (batch, 4, length, width) float32 time steps fit `slice_bytes`."""
    per_channel = batch * NUM_DIRECTIONS * length * 4
    width = max(1, slice_bytes // per_channel) // _CHANNEL_QUANTUM * _CHANNEL_QUANTUM
    return min(channels, max(width, 2 * _CHANNEL_QUANTUM))


@torch.no_grad()
def cross_selective_scan_inplace(
    u: torch.Tensor,
    x_proj_weight: torch.Tensor,
    dt_proj_weight: torch.Tensor,
    dt_proj_bias: torch.Tensor,
    A_log: torch.Tensor,
    D: torch.Tensor,
    backend: str = "auto",
    slice_bytes: int = DEFAULT_SLICE_BYTES,
    position_chunk: int = DEFAULT_POSITION_CHUNK,
    buffers: dict | None = None,
) -> torch.Tensor:
    """SS2D core of `cross_selective_scan`, overwriting its channels-last input with the output.

    Args:
        u: (B, H, W, D) contiguous activated features, channels last; overwritten.
        x_proj_weight, dt_proj_weight, dt_proj_bias, A_log, D: as in `cross_selective_scan_reference`.
        backend: a scan backend name, resolved as `cross_selective_scan` does.
        slice_bytes: memory for one channel slice's time steps (the largest temporary).
        position_chunk: grid positions per chunk of the (dt, B, C) projection.
        buffers: a dict in which to keep the temporaries for the next call (see `scratch`); None: no reuse.

    Returns:
        `u`, now holding the four directions' outputs summed, (B, H, W, D) (computed in float32, stored in
        u's dtype). Extra memory: the projections, (R + 2N) * 4 floats per position, plus one channel slice.
    """
    if not u.is_contiguous() or u.ndim != 4:
        raise ValueError(f"cross_selective_scan_inplace needs a contiguous (B, H, W, D) tensor, got {tuple(u.shape)}")
    batch, height, width, channels = u.shape
    length = height * width
    rank = dt_proj_weight.shape[-1]
    state = A_log.shape[-1]
    grid = u.view(batch, length, channels)

    # Projections of every position onto each direction's (dt, B, C), stored as the kernels take them.
    dt_low = scratch(buffers, "scan.dt", (batch, NUM_DIRECTIONS, length, rank), torch.float32, u.device)
    Bs = scratch(buffers, "scan.B", (batch, NUM_DIRECTIONS, length, state), torch.float32, u.device)
    Cs = scratch(buffers, "scan.C", (batch, NUM_DIRECTIONS, length, state), torch.float32, u.device)
    weight = x_proj_weight.float().flatten(0, 1).t()  # (D, 4 * (R + 2N))
    for start in range(0, length, position_chunk):
        stop = min(start + position_chunk, length)
        proj = (grid[:, start:stop].float() @ weight).view(batch, stop - start, NUM_DIRECTIONS, rank + 2 * state)
        proj = proj.permute(0, 2, 1, 3)
        dt_low[:, :, start:stop] = proj[..., :rank]
        Bs[:, :, start:stop] = proj[..., rank : rank + state]
        Cs[:, :, start:stop] = proj[..., rank + state :]

    A = -torch.exp(A_log.float()).view(NUM_DIRECTIONS, channels, state)
    skip = D.float().view(NUM_DIRECTIONS, channels)
    bias = dt_proj_bias.float().view(NUM_DIRECTIONS, channels)
    dt_weight = dt_proj_weight.float()  # (4, D, R)
    step = channel_slice_width(channels, batch, length, slice_bytes)
    for c0 in range(0, channels, step):
        c1 = min(c0 + step, channels)
        # Each channel's scan reads only its own u and time steps; B and C are shared and already computed.
        u_slice = scratch(buffers, "scan.u", (batch, length, c1 - c0), torch.float32, u.device)
        u_slice.copy_(grid[..., c0:c1])
        delta = scratch(buffers, "scan.delta", (batch, NUM_DIRECTIONS, length, c1 - c0), torch.float32, u.device)
        for b in range(batch):
            for k in range(NUM_DIRECTIONS):
                torch.mm(dt_low[b, k], dt_weight[k, c0:c1].t(), out=delta[b, k])
        y = cross_scan_channels_last(
            u_slice,
            delta,
            A[:, c0:c1].contiguous(),
            Bs,
            Cs,
            skip[:, c0:c1].contiguous(),
            bias[:, c0:c1].contiguous(),
            height,
            width,
            backend=backend,
        )
        del delta, u_slice
        grid[..., c0:c1] = y
        del y
    return u
