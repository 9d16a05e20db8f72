"""Reference PyTorch implementation of the DASS cross selective scan.

Readable and always available; every compiled backend is checked against it. Vectorised over time with
a chunked parallel prefix scan, so nothing loops over time steps in Python.

Notation: B batch, K = 4 scan directions, D inner channels, N state size, R time-step rank,
H x W the (frequency, time) grid, L = H * W.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# The four scan orders of the cross scan (row-major, column-major, and both reversed).
NUM_DIRECTIONS = 4
_CHUNK = 64


def cross_scan(x: torch.Tensor) -> torch.Tensor:
    """Unfold a grid into the four scan orders.

    Args:
        x: (B, D, H, W).
    Returns:
        (B, 4, D, L): direction 0 walks rows (W fastest), 1 walks columns (H fastest), 2 and 3 are 0 and 1
        reversed.
    """
    rows = x.flatten(2)
    cols = x.transpose(2, 3).flatten(2)
    forward = torch.stack([rows, cols], dim=1)
    return torch.cat([forward, forward.flip(-1)], dim=1)


def cross_merge(ys: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Sum the four directions' outputs back onto the grid (the adjoint of `cross_scan`).

    Args:
        ys: (B, 4, D, L) in each direction's own order.
    Returns:
        (B, D, H, W).
    """
    batch, _, channels, _ = ys.shape
    forward = ys[:, :2] + ys[:, 2:].flip(-1)
    rows = forward[:, 0].reshape(batch, channels, height, width)
    cols = forward[:, 1].reshape(batch, channels, width, height).transpose(2, 3)
    return rows + cols


def _prefix_scan(decay: torch.Tensor, drive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive scan of h_t = decay_t * h_{t-1} + drive_t with h_{-1} = 0 along the last dim.

    Hillis-Steele doubling: log2(T) passes, products of decays only ever shrink, so it is stable for any
    decay in [0, 1]. Returns (cumulative decay prod_{s<=t} decay_s, h_t), both shaped like the inputs.
    """
    length = decay.shape[-1]
    step = 1
    while step < length:
        drive = torch.cat([drive[..., :step], torch.addcmul(drive[..., step:], decay[..., step:], drive[..., :-step])], -1)
        decay = torch.cat([decay[..., :step], decay[..., step:] * decay[..., :-step]], -1)
        step *= 2
    return decay, drive


def linear_recurrence(decay: torch.Tensor, drive: torch.Tensor, chunk: int = _CHUNK) -> torch.Tensor:
    """Solve h_t = decay_t * h_{t-1} + drive_t (h_{-1} = 0) along the last dim, in chunks.

    Each chunk is scanned in parallel; the chunk-end states are then scanned recursively (a sequence
    `chunk` times shorter) and carried into the next chunk. Work O(T log chunk), no Python loop over T.

    Args:
        decay, drive: (..., T), same shape.
    Returns:
        h: (..., T).
    """
    length = decay.shape[-1]
    if length <= chunk:
        return _prefix_scan(decay, drive)[1]
    num_chunks = -(-length // chunk)
    pad = num_chunks * chunk - length
    if pad:
        decay = F.pad(decay, (0, pad), value=1.0)
        drive = F.pad(drive, (0, pad))
    decay = decay.unflatten(-1, (num_chunks, chunk))
    drive = drive.unflatten(-1, (num_chunks, chunk))
    cum_decay, local = _prefix_scan(decay, drive)
    chunk_end = linear_recurrence(cum_decay[..., -1], local[..., -1], chunk)
    carry_in = F.pad(chunk_end[..., :-1], (1, 0)).unsqueeze(-1)
    states = torch.addcmul(local, cum_decay, carry_in).flatten(-2)
    return states[..., :length]


def _widen(t: torch.Tensor) -> torch.Tensor:
    """The scan's working precision: float32, or float64 for float64 inputs (tests' ground truth)."""
    return t if t.dtype == torch.float64 else t.float()


def selective_scan_reference(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    recurrence=linear_recurrence,
) -> torch.Tensor:
    """Selective scan with grouped B/C (mamba-ssm `selective_scan_fn` semantics), computed in float32
    (float64 when the inputs are float64).

    Args:
        u: (B, G*D, L) inputs.
        delta: (B, G*D, L) raw time steps.
        A: (G*D, N) state matrix (negative for a stable scan).
        B, C: (B, G, N, L) input and output projections, shared by the D channels of each group.
        D: (G*D,) skip connection, optional.
        delta_bias: (G*D,) added to `delta` before the softplus, optional.
        recurrence: the solver of h_t = decay_t * h_{t-1} + drive_t along the last dim (`linear_recurrence`, or
            `chunked.linear_recurrence_chunked` for graphs exported with a dynamic length).
    Returns:
        (B, G*D, L) float32 (float64 for float64 inputs).
    """
    batch, channels, length = u.shape
    groups, state = B.shape[1], B.shape[2]
    u, delta, A, B, C = (_widen(t) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + _widen(delta_bias)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    per_group = channels // groups
    u4 = u.view(batch, groups, per_group, 1, length)
    delta4 = delta.view(batch, groups, per_group, 1, length)
    decay = torch.exp(delta4 * A.view(groups, per_group, state, 1))
    drive = delta4 * u4 * B.unsqueeze(2)
    states = recurrence(decay, drive)
    y = (states * C.unsqueeze(2)).sum(3).view(batch, channels, length)
    if D is not None:
        y = y + u * _widen(D)[:, None]
    return y


def cross_selective_scan_reference(
    x: torch.Tensor,
    x_proj_weight: torch.Tensor,
    dt_proj_weight: torch.Tensor,
    dt_proj_bias: torch.Tensor,
    A_log: torch.Tensor,
    D: torch.Tensor,
    scan=selective_scan_reference,
) -> torch.Tensor:
    """The SS2D core: cross scan, per-direction projections, selective scan, cross merge.

    Args:
        x: (B, D, H, W) activated features.
        x_proj_weight: (4, R + 2N, D) per-direction projection to (dt, B, C).
        dt_proj_weight: (4, D, R) per-direction time-step up-projection.
        dt_proj_bias: (4, D) time-step bias (added inside the softplus).
        A_log: (4*D, N), the state matrix is -exp(A_log).
        D: (4*D,) skip connection.
        scan: a function with the signature and semantics of `selective_scan_reference` (mamba-ssm's
            `selective_scan_fn` fits).
    Returns:
        (B, D, H, W) float32, the four directions summed.
    """
    batch, channels, height, width = x.shape
    rank = dt_proj_weight.shape[-1]
    state = A_log.shape[-1]
    with torch.autocast(device_type=x.device.type, enabled=False):
        xs = cross_scan(x.float())
        x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, x_proj_weight.float())
        dts, Bs, Cs = torch.split(x_dbl, [rank, state, state], dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, dt_proj_weight.float())
        ys = scan(
            xs.flatten(1, 2).contiguous(),
            dts.flatten(1, 2).contiguous(),
            -torch.exp(A_log.float()),
            Bs.contiguous(),
            Cs.contiguous(),
            D.float(),
            delta_bias=dt_proj_bias.flatten().float(),
            delta_softplus=True,
        )
    return cross_merge(ys.float().view(batch, NUM_DIRECTIONS, channels, -1), height, width)


def grid_orders(height: int, width: int, device=None) -> torch.Tensor:
    """Grid positions (row-major index h * W + w) visited by each direction, (4, L) int64.

    Direction 0 walks rows (W fastest), 1 walks columns (H fastest), 2 and 3 are 0 and 1 reversed.
    """
    rows = torch.arange(height * width, device=device)
    cols = rows.view(height, width).t().flatten()
    return torch.stack([rows, cols, rows.flip(0), cols.flip(0)])


def cross_scan_channels_last_reference(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    delta_bias: torch.Tensor,
    height: int,
    width: int,
) -> torch.Tensor:
    """The fused cross selective scan in the layout the compiled kernels take (all on the grid, row-major).

    Args:
        u: (B, L, D) inputs, L = height * width in row-major grid order, channels last.
        delta: (B, 4, L, D) raw time steps of each direction, at grid positions (not in scan order).
        A: (4, D, N) state matrix (negative), D: (4, D) skip, delta_bias: (4, D).
        B, C: (B, 4, L, N) input/output projections of each direction at grid positions.
    Returns:
        (B, L, D) float32 (float64 for float64 inputs): for each direction k, the selective scan along its order with
        `softplus(delta + delta_bias)`, plus `D * u`, summed over the four directions at each grid position.
    """
    batch, length, channels = u.shape
    state = A.shape[-1]
    order = grid_orders(height, width, u.device)  # (4, L)
    u_k = _widen(u)[:, order]  # (B, 4, L, D) in scan order
    delta_k = torch.gather(_widen(delta), 2, order[None, :, :, None].expand(batch, -1, -1, channels))
    B_k = torch.gather(_widen(B), 2, order[None, :, :, None].expand(batch, -1, -1, state))
    C_k = torch.gather(_widen(C), 2, order[None, :, :, None].expand(batch, -1, -1, state))
    ys = selective_scan_reference(
        u_k.permute(0, 1, 3, 2).reshape(batch, NUM_DIRECTIONS * channels, length),
        delta_k.permute(0, 1, 3, 2).reshape(batch, NUM_DIRECTIONS * channels, length),
        A.reshape(NUM_DIRECTIONS * channels, state),
        B_k.permute(0, 1, 3, 2),
        C_k.permute(0, 1, 3, 2),
        D.reshape(-1),
        delta_bias.reshape(-1),
    ).view(batch, NUM_DIRECTIONS, channels, length)
    out = torch.zeros(batch, length, channels, dtype=ys.dtype, device=u.device)
    for k in range(NUM_DIRECTIONS):
        out.index_add_(1, order[k], ys[:, k].transpose(1, 2))
    return out
