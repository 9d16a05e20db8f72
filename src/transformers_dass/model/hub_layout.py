"""The authors' Hub remote-code layout (`saurabhati/DASS_*`) as transformers' checkpoint conversion mapping.

Those repositories name the tensors after their own remote code (`dass.patch_embeddings.projection.*`,
`dass.layers.{i}.blocks.{j}.op.*`, `head.*`) and keep the four scan directions of two projections stacked in one
matrix: `x_proj.weight` (4 * (R + 2N), D) and `dt_projs.weight` (4 * D, R). Registering the renamings and the two
reshapes below for `DassModel`, `DassForAudioClassification` and `DassForAudioFrameClassification` lets
`from_pretrained` read such a folder directly: transformers applies them while it loads, no converted copy is written. Folders saved by this package are already in the native layout
and match none of the source patterns.

Saving stays native: `DassPreTrainedModel.save_pretrained` defaults to `save_original_format=False`.
"""

from __future__ import annotations

import re

import torch
from transformers.conversion_mapping import (
    get_checkpoint_conversion_mapping,
    register_checkpoint_conversion_mapping,
)
from transformers.core_model_loading import (
    ConversionOps,
    WeightConverter,
    WeightRenaming,
)

# (Hub source pattern, native target) for the keys of the base model (`DassModel`; `dass.`-prefixed inside
# `DassForAudioClassification`): regular expressions searched in every key, applied in order, all that match (each
# rewrites its own part of a key, as transformers requires to reverse them); converters see the renamed keys.
# None matches a native key.
HUB_RENAMINGS = (
    (r"patch_embeddings\.projection\.0\.", "embeddings.conv1."),
    (r"patch_embeddings\.projection\.1\.", "embeddings.norm1."),
    (r"patch_embeddings\.projection\.3\.", "embeddings.conv2."),
    (r"patch_embeddings\.projection\.4\.", "embeddings.norm2."),
    (r"layers\.", "stages."),
    (r"\.downsample\.down\.", ".downsample.conv."),
    # The final LayerNorm: `norm.` at the start of a base-model key or right after the `dass.` prefix (not the
    # `downsample.norm.` of the stages).
    (r"(?:^|(?<=^dass\.))norm\.", "layernorm."),
    # Inside a block: `norm` / `norm2` are the LayerNorms before the mixer and before the MLP (a block's are the
    # only ones that follow a digit: `blocks.{j}.norm`; the native `embeddings.norm2` must not match), `op` is the
    # SS2D mixer.
    (r"(?<=\d)\.norm\.", ".layernorm_before."),
    (r"(?<=\d)\.norm2\.", ".layernorm_after."),
    (r"\.op\.", ".mixer."),
    (r"\.dt_projs_bias", ".dt_proj_bias"),
    (r"\.A_logs", ".A_log"),
    (r"\.Ds", ".D"),
)
# The classification head of the Hub layout.
HUB_HEAD_RENAMINGS = ((r"^head\.", "classifier."),)
# Tensors whose four scan directions the Hub layout stacks in one matrix (after the renamings above).
HUB_STACKED = ((r"\.x_proj\.weight", ".x_proj_weight"), (r"\.dt_projs\.weight", ".dt_proj_weight"))


class _DirectionsOp(ConversionOps):
    """A one-tensor reshape between the Hub's stacked matrices and this package's per-direction ones."""

    def __init__(self, directions: int):
        self.directions = directions

    @staticmethod
    def only_tensor(input_dict) -> torch.Tensor:
        (tensors,) = input_dict.values()
        return tensors[0] if isinstance(tensors, list) else tensors


class SplitDirections(_DirectionsOp):
    """(directions * rows, cols) -> (directions, rows, cols): the Hub code stacks the per-direction matrices."""

    @torch.no_grad()
    def convert(self, input_dict, source_patterns, target_patterns, **kwargs) -> dict[str, torch.Tensor]:
        tensor = self.only_tensor(input_dict)
        if tensor.ndim != 2 or tensor.shape[0] % self.directions:
            raise ValueError(
                f"{source_patterns[0]}: expected a ({self.directions} * rows, cols) matrix in the Hub layout, got "
                f"{tuple(tensor.shape)}."
            )
        return {target_patterns[0]: tensor.reshape(self.directions, -1, tensor.shape[-1]).contiguous()}

    @property
    def reverse_op(self) -> ConversionOps:
        return MergeDirections(self.directions)


class MergeDirections(_DirectionsOp):
    """(directions, rows, cols) -> (directions * rows, cols): the inverse of `SplitDirections`, for saving."""

    @torch.no_grad()
    def convert(self, input_dict, source_patterns, target_patterns, **kwargs) -> dict[str, torch.Tensor]:
        return {target_patterns[0]: self.only_tensor(input_dict).flatten(0, 1).contiguous()}

    @property
    def reverse_op(self) -> ConversionOps:
        return SplitDirections(self.directions)


def hub_conversion_mapping(directions: int) -> list[WeightRenaming | WeightConverter]:
    """The transforms that turn the base model's Hub-layout keys and tensors into this package's."""
    renamings = [WeightRenaming(source, target) for source, target in HUB_RENAMINGS]
    reshapes = [WeightConverter(source, target, [SplitDirections(directions)]) for source, target in HUB_STACKED]
    return renamings + reshapes


def hub_state_dict_to_native(state_dict: dict[str, torch.Tensor], directions: int) -> dict[str, torch.Tensor]:
    """The same tables applied to a whole `DassForAudioClassification` state dict in memory (for `dass convert`):
    each pattern rewrites its first match, in order, ending on a name boundary as transformers' patterns do. Keys
    that match nothing are kept as they are, for the caller's check against the model to report."""
    split = SplitDirections(directions)
    native = {}
    for key, tensor in state_dict.items():
        for source, target in HUB_HEAD_RENAMINGS + HUB_RENAMINGS:
            key = re.sub(source + (r"(?!\w)" if source[-1].isalnum() else ""), target, key, count=1)
        for source, target in HUB_STACKED:
            if re.search(source, key):
                key = re.sub(source, target, key, count=1)
                tensor = split.convert({key: [tensor]}, [source], [key])[key]
        native[key] = tensor
    return native


def register_hub_layout(base_class: str, head_classes: tuple[str, ...], directions: int) -> None:
    """Register the mappings by class name, once (re-imports leave them as they are): the base model's for
    `base_class` (transformers also applies it, scoped, to the base model inside a head model), the head renaming
    for each of `head_classes`."""
    mappings = {base_class: lambda: hub_conversion_mapping(directions)}
    mappings.update({name: lambda: [WeightRenaming(s, t) for s, t in HUB_HEAD_RENAMINGS] for name in head_classes})
    for name, make in mappings.items():
        if get_checkpoint_conversion_mapping(name) is None:
            register_checkpoint_conversion_mapping(name, make())


__all__ = ["HUB_HEAD_RENAMINGS", "HUB_RENAMINGS", "HUB_STACKED", "hub_conversion_mapping", "hub_state_dict_to_native", "register_hub_layout"]
