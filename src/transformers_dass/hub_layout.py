"""The authors' Hub remote-code layout (`saurabhati/DASS_*`) as transformers' checkpoint conversion mapping.

Those repositories name the tensors after their own remote code (`dass.patch_embeddings.projection.*`,
`dass.layers.{i}.blocks.{j}.op.*`, `head.*`) and keep the four scan directions of two projections stacked in one
matrix: `x_proj.weight` (4 * (R + 2N), D) and `dt_projs.weight` (4 * D, R). Registering the renamings and the two
reshapes below for model type "dass" lets `from_pretrained` read such a folder directly: transformers applies
them while it loads, no converted copy is written. Folders saved by this package are already in the native layout
and match none of the source patterns.

Saving stays native: `DassPreTrainedModel.save_pretrained` defaults to `save_original_format=False`.
"""

from __future__ import annotations

import torch
from transformers.conversion_mapping import get_checkpoint_conversion_mapping, register_checkpoint_conversion_mapping
from transformers.core_model_loading import ConversionOps, WeightConverter, WeightRenaming

# (Hub source pattern, native target): regular expressions searched in every checkpoint key, applied in order
# (all that match fire, so `dass.layers.` -> `dass.stages.` and `.op.` -> `.mixer.` chain with the block renamings).
HUB_RENAMINGS = (
    (r"^dass\.patch_embeddings\.projection\.0\.", "dass.embeddings.conv1."),
    (r"^dass\.patch_embeddings\.projection\.1\.", "dass.embeddings.norm1."),
    (r"^dass\.patch_embeddings\.projection\.3\.", "dass.embeddings.conv2."),
    (r"^dass\.patch_embeddings\.projection\.4\.", "dass.embeddings.norm2."),
    (r"^dass\.layers\.", "dass.stages."),
    (r"\.downsample\.down\.", ".downsample.conv."),
    (r"^dass\.norm\.", "dass.layernorm."),
    (r"^head\.", "classifier."),
    # Inside a block: `norm` / `norm2` are the LayerNorms before the mixer and before the MLP (a block's are the
    # only ones that follow a digit: `blocks.{j}.norm`; the native `embeddings.norm2` must not match), `op` is the
    # SS2D mixer.
    (r"(?<=\d)\.norm\.", ".layernorm_before."),
    (r"(?<=\d)\.norm2\.", ".layernorm_after."),
    (r"\.op\.", ".mixer."),
    (r"\.mixer\.dt_projs_bias$", ".mixer.dt_proj_bias"),
    (r"\.mixer\.A_logs$", ".mixer.A_log"),
    (r"\.mixer\.Ds$", ".mixer.D"),
)


class SplitDirections(ConversionOps):
    """(directions * rows, cols) -> (directions, rows, cols): the Hub code stacks the per-direction matrices."""

    def __init__(self, directions: int):
        self.directions = directions

    @torch.no_grad()
    def convert(self, input_dict, source_patterns, target_patterns, **kwargs) -> dict[str, torch.Tensor]:
        (tensors,) = input_dict.values()
        tensor = tensors[0] if isinstance(tensors, list) else tensors
        if tensor.ndim != 2 or tensor.shape[0] % self.directions:
            raise ValueError(
                f"{source_patterns[0]}: expected a ({self.directions} * rows, cols) matrix in the Hub layout, got "
                f"{tuple(tensor.shape)}."
            )
        return {target_patterns[0]: tensor.reshape(self.directions, -1, tensor.shape[-1]).contiguous()}

    @property
    def reverse_op(self) -> ConversionOps:
        return MergeDirections()


class MergeDirections(ConversionOps):
    """(directions, rows, cols) -> (directions * rows, cols): the inverse of `SplitDirections`, for saving."""

    @torch.no_grad()
    def convert(self, input_dict, source_patterns, target_patterns, **kwargs) -> dict[str, torch.Tensor]:
        (tensors,) = input_dict.values()
        tensor = tensors[0] if isinstance(tensors, list) else tensors
        return {target_patterns[0]: tensor.flatten(0, 1).contiguous()}

    @property
    def reverse_op(self) -> ConversionOps:
        return SplitDirections(1)


def hub_conversion_mapping(directions: int) -> list[WeightRenaming | WeightConverter]:
    """The transforms that turn Hub-layout keys and tensors into this package's (see the module docstring)."""
    renamings = [WeightRenaming(source, target) for source, target in HUB_RENAMINGS]
    reshapes = [
        WeightConverter(r"\.mixer\.x_proj\.weight$", ".mixer.x_proj_weight", [SplitDirections(directions)]),
        WeightConverter(r"\.mixer\.dt_projs\.weight$", ".mixer.dt_proj_weight", [SplitDirections(directions)]),
    ]
    return renamings + reshapes


def register_hub_layout(model_type: str, directions: int) -> None:
    """Register the mapping for `model_type` once (re-imports and reloads of the package leave it as it is)."""
    if get_checkpoint_conversion_mapping(model_type) is None:
        register_checkpoint_conversion_mapping(model_type, hub_conversion_mapping(directions))


__all__ = ["HUB_RENAMINGS", "hub_conversion_mapping", "register_hub_layout"]
