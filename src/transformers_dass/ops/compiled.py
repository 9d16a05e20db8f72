"""Binding to the compiled cross-scan kernels of `kernels/selective_scan` (package `dass_selective_scan`).

The C++/CUDA extension defines the ops `dass::cross_scan_fwd` and `dass::cross_scan_bwd`; this module
registers their autograd formula and fake (meta) implementations, so that training, `torch.compile` and
`torch.export` work through them, and maps the SS2D core onto the kernels' channels-last layout.
Nothing is imported until a compiled backend is first asked for.
"""

from __future__ import annotations

import functools

import torch

from .reference import NUM_DIRECTIONS

# Input dtypes the kernels (CPU and CUDA) compute with natively: float32 state and sums, outputs in this dtype.
LOW_PRECISION = (torch.float16, torch.bfloat16)


@functools.lru_cache(maxsize=None)
def load_kernels():
    """The imported `dass_selective_scan` module with its ops registered, or None when it is not built."""
    try:
        import dass_selective_scan
    except ImportError:
        return None
    _register_python_side()
    return dass_selective_scan


def kernels_have_cuda() -> bool:
    module = load_kernels()
    return bool(module is not None and module.has_cuda())


def _register_python_side() -> None:
    @torch.library.register_fake("dass::cross_scan_fwd")
    def _fwd_fake(u, delta, A, B, C, D, delta_bias, height, width):
        return u.new_empty(u.shape)  # y in the dtype of u

    @torch.library.register_fake("dass::cross_scan_bwd")
    def _bwd_fake(dy, u, delta, A, B, C, D, delta_bias, height, width):
        return tuple(torch.empty_like(t) for t in (u, delta, A, B, C, D, delta_bias))

    def setup_context(ctx, inputs, output):
        u, delta, A, B, C, D, delta_bias, height, width = inputs
        ctx.save_for_backward(u, delta, A, B, C, D, delta_bias)
        ctx.grid = (height, width)

    def backward(ctx, grad_output):
        # The kernels take dy in float32 or in the dtype of u (both read it as float32).
        grads = torch.ops.dass.cross_scan_bwd(grad_output.contiguous(), *ctx.saved_tensors, *ctx.grid)
        return (*grads, None, None)

    torch.library.register_autograd("dass::cross_scan_fwd", backward, setup_context=setup_context)


def cross_selective_scan_compiled(
    x: torch.Tensor,
    x_proj_weight: torch.Tensor,
    dt_proj_weight: torch.Tensor,
    dt_proj_bias: torch.Tensor,
    A_log: torch.Tensor,
    D: torch.Tensor,
) -> torch.Tensor:
    """SS2D core through the compiled kernel; the contract of `cross_selective_scan_reference`, x (B, D, H, W)
    -> (B, D, H, W) (a channels-last view: no copy when x is channels-last), except for the dtype: float16 and
    bfloat16 x run natively and come back in their dtype; any other dtype runs (and comes back) in float32.

    The per-direction projections are computed on the grid (they are pointwise), so the four scan orders
    are never materialised: the kernel walks them itself. In low precision the projections run in x's dtype
    too (matmuls accumulate in float32 and round their outputs, as autocast's would), and the kernel keeps
    its state and sums in float32; only the parameters A, D and the time-step bias are float32 (they are
    small). Call it through `dispatch.cross_selective_scan`, which loads the kernels first.
    """
    batch, channels, height, width = x.shape
    rank = dt_proj_weight.shape[-1]
    state = A_log.shape[-1]
    dtype = x.dtype if x.dtype in LOW_PRECISION else torch.float32
    with torch.autocast(device_type=x.device.type, enabled=False):
        u = x.permute(0, 2, 3, 1).reshape(batch, height * width, channels).to(dtype)
        proj = (u @ x_proj_weight.to(dtype).flatten(0, 1).t()).view(batch, -1, NUM_DIRECTIONS, rank + 2 * state)
        # (B, 4, L, R) @ (4, R, D): written straight into the (B, 4, L, D) layout the kernel takes (an einsum
        # here computes (4, B * L, D) and then needs a copy, and is ~1.4x slower even at batch 1).
        delta = torch.matmul(proj[..., :rank].permute(0, 2, 1, 3), dt_proj_weight.to(dtype).transpose(1, 2))
        # B and C are read as float32 by the kernels; here they stay in `dtype` (N / D the size of u).
        Bs = proj[..., rank : rank + state].permute(0, 2, 1, 3)
        Cs = proj[..., rank + state :].permute(0, 2, 1, 3)
        y = torch.ops.dass.cross_scan_fwd(
            u.contiguous(),
            delta.contiguous(),
            -torch.exp(A_log.float()).view(NUM_DIRECTIONS, channels, state),
            Bs.contiguous(),
            Cs.contiguous(),
            D.float().view(NUM_DIRECTIONS, channels),
            dt_proj_bias.float().contiguous(),
            height,
            width,
        )
    return y.view(batch, height, width, channels).permute(0, 3, 1, 2)
