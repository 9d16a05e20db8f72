"""The building blocks of DASS, shared by the standard forward (`modeling_dass`) and the memory-lean one
(`lean_inference`): patch embedding, downsampling, the SS2D mixer, the MLP, the VSS block and a stage.

Inside the blocks features are channels-last (batch, height, width, channels); `channels_first` and
`channels_last` convert between that and the (batch, channels, height, width) maps handed to users.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer

from ..ops import NUM_DIRECTIONS, cross_selective_scan
from .configuration_dass import DassConfig
from .fused_linear import linear

__all__ = [
    "DassBlock",
    "DassDownsample",
    "DassDropPath",
    "DassFrameSkip",
    "DassMLP",
    "DassPatchEmbeddings",
    "DassSS2D",
    "DassStage",
    "DassZeroInitLinear",
    "channels_first",
    "channels_last",
    "drop_path",
]


def drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero whole samples of a residual branch with probability `drop_prob`."""
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    mask_shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = x.new_empty(mask_shape).bernoulli_(keep_prob)
    return x * mask / keep_prob


class DassDropPath(nn.Module):
    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return drop_path(hidden_states, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"p={self.drop_prob}"


def channels_first(hidden_states: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) -> (B, C, H, W)."""
    return hidden_states.permute(0, 3, 1, 2)


def channels_last(hidden_states: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H, W, C)."""
    return hidden_states.permute(0, 2, 3, 1)


class DassPatchEmbeddings(nn.Module):
    """Two stride-`patch_size // 2` 3x3 convolutions: (B, 1, F, T) -> (B, ceil(F/4), ceil(T/4), dims[0])."""

    def __init__(self, config: DassConfig):
        super().__init__()
        stride = config.patch_size // 2
        half = config.dims[0] // 2
        self.conv1 = nn.Conv2d(1, half, kernel_size=stride + 1, stride=stride, padding=1)
        self.norm1 = nn.LayerNorm(half, eps=config.layer_norm_eps)
        self.act = ACT2FN[config.hidden_act]
        self.conv2 = nn.Conv2d(half, config.dims[0], kernel_size=stride + 1, stride=stride, padding=1)
        self.norm2 = nn.LayerNorm(config.dims[0], eps=config.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden_states = channels_last(self.conv1(pixel_values))
        hidden_states = self.act(self.norm1(hidden_states))
        hidden_states = channels_last(self.conv2(channels_first(hidden_states)))
        return self.norm2(hidden_states)


class DassDownsample(nn.Module):
    """Stride-2 3x3 convolution then LayerNorm: (B, H, W, C_in) -> (B, ceil(H/2), ceil(W/2), C_out)."""

    def __init__(self, config: DassConfig, in_dim: int, out_dim: int):
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim, kernel_size=3, stride=2, padding=1)
        self.norm = nn.LayerNorm(out_dim, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.norm(channels_last(self.conv(channels_first(hidden_states))))


class DassSS2D(nn.Module):
    """2-D selective scan mixer (VMamba SS2D, `v05_noz`: no gate, d_state usually 1).

    in_proj -> depthwise conv -> SiLU -> selective scan along four directions of the grid, summed back
    -> LayerNorm -> out_proj. Per direction k: `x_proj_weight[k]` maps D -> (R dt, N B, N C),
    `dt_proj_weight[k]` R -> D; rows k*D:(k+1)*D of `A_log` and `D` belong to direction k.
    """

    def __init__(self, config: DassConfig, dim: int, dt_rank: int):
        super().__init__()
        inner = int(config.ssm_ratio * dim)
        state = config.d_state
        self.inner_dim, self.dt_rank, self.d_state = inner, dt_rank, state
        self.scan_backend = config.scan_backend
        self.in_proj = nn.Linear(dim, inner, bias=False)
        self.conv2d = nn.Conv2d(
            inner,
            inner,
            kernel_size=config.ssm_conv,
            padding=config.ssm_conv // 2,
            groups=inner,
            bias=config.ssm_conv_bias,
        )
        self.act = nn.SiLU()
        self.x_proj_weight = nn.Parameter(torch.empty(NUM_DIRECTIONS, dt_rank + 2 * state, inner))
        self.dt_proj_weight = nn.Parameter(torch.empty(NUM_DIRECTIONS, inner, dt_rank))
        # float32 whatever the default dtype: see DassPreTrainedModel._keep_in_fp32_modules_strict
        self.dt_proj_bias = nn.Parameter(torch.empty(NUM_DIRECTIONS, inner, dtype=torch.float32))
        self.A_log = nn.Parameter(torch.empty(NUM_DIRECTIONS * inner, state, dtype=torch.float32))
        self.D = nn.Parameter(torch.empty(NUM_DIRECTIONS * inner, dtype=torch.float32))
        self.out_norm = nn.LayerNorm(inner, eps=config.layer_norm_eps)
        self.out_proj = nn.Linear(inner, dim, bias=False)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(B, H, W, dim) -> (B, H, W, dim)."""
        features = channels_first(linear(self.in_proj, hidden_states))
        features = self.act(self.conv2d(features))
        scanned = cross_selective_scan(
            features,
            self.x_proj_weight,
            self.dt_proj_weight,
            self.dt_proj_bias,
            self.A_log,
            self.D,
            backend=self.scan_backend,
        )
        scanned = self.out_norm(channels_last(scanned).type_as(features))
        return linear(self.out_proj, scanned)


class DassMLP(nn.Module):
    def __init__(self, config: DassConfig, dim: int):
        super().__init__()
        hidden = int(dim * config.mlp_ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = ACT2FN[config.hidden_act]
        self.fused_activation = "gelu" if config.hidden_act == "gelu" else None  # fused_linear.py: GELU in fc1
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.fused_activation is not None:
            hidden_states = linear(self.fc1, hidden_states, self.fused_activation)
        else:
            hidden_states = self.act(self.fc1(hidden_states))
        return linear(self.fc2, hidden_states)


class DassBlock(GradientCheckpointingLayer):
    """VSS block: x + SS2D(LN(x)), then x + MLP(LN(x)); (B, H, W, dim) in and out."""

    def __init__(self, config: DassConfig, dim: int, dt_rank: int, drop_path_rate: float):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mixer = DassSS2D(config, dim, dt_rank)
        self.drop_path = DassDropPath(drop_path_rate)
        self.has_mlp = config.mlp_ratio > 0
        if self.has_mlp:
            self.layernorm_after = nn.LayerNorm(dim, eps=config.layer_norm_eps)
            self.mlp = DassMLP(config, dim)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.drop_path(self.mixer(self.layernorm_before(hidden_states)))
        if self.has_mlp:
            hidden_states = hidden_states + self.drop_path(self.mlp(self.layernorm_after(hidden_states)))
        return hidden_states


class DassStage(nn.Module):
    """The VSS blocks of one stage, then (except after the last stage) a downsampling to the next width."""

    def __init__(self, config: DassConfig, index: int, drop_path_rates: list[float]):
        super().__init__()
        dim = config.dims[index]
        dt_rank = config.dt_ranks[index]
        self.blocks = nn.ModuleList(DassBlock(config, dim, dt_rank, rate) for rate in drop_path_rates)
        is_last = index == len(config.dims) - 1
        self.downsample = None if is_last else DassDownsample(config, dim, config.dims[index + 1])


class DassZeroInitLinear(nn.Linear):
    """A linear layer that the model's `_init_weights` sets to zero (weight and bias) rather than random."""


class DassFrameSkip(nn.Module):
    """Frame scores of an earlier stage: its output averaged over frequency, (batch, steps, dim), through a
    LayerNorm and a linear layer to (batch, steps, num_labels). `DassForAudioFrameClassification` adds them,
    interpolated to its steps, to the last stage's frame scores (`config.frame_skip_stages`); the linear layer
    starts at zero (`DassZeroInitLinear`), so a new skip changes nothing until it is trained."""

    def __init__(self, config: DassConfig, stage: int):
        super().__init__()
        dim = config.dims[stage]
        self.layernorm = nn.LayerNorm(dim, eps=config.layer_norm_eps, dtype=torch.float32)
        self.proj = DassZeroInitLinear(dim, config.num_labels, dtype=torch.float32)

    def forward(self, stage_steps: torch.Tensor) -> torch.Tensor:
        return self.proj(self.layernorm(stage_steps.to(self.proj.weight.dtype)))
