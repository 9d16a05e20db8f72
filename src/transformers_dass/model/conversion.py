"""Convert DASS checkpoints of the authors' code to this package's layout.

Two source layouts are understood:
- "original": the released `.pth` files (`module.v.` + VMamba `VSSM` keys; the prefix may be absent);
- "hub": the Hub remote-code repositories (`saurabhati/DASS_*`: `dass.*` + `head.*` keys, with the
  per-direction projections flattened to `x_proj.weight` (4*(R+2N), D) and `dt_projs.weight` (4*D, R)).
The architecture is read off the tensors; any key that does not map, or that the model needs and the
checkpoint lacks, is an error that lists them.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ..ops import NUM_DIRECTIONS
from .configuration_dass import DassConfig
from .feature_extraction_dass import DassFeatureExtractor
from .hub_layout import hub_state_dict_to_native
from .modeling_dass import DassForAudioClassification

_WB = r"\.(weight|bias)"
# Each rule is (full-match pattern, replacement); `\N` groups carry stage/block indices and weight/bias.
_ORIGINAL_RULES = [
    (r"patch_embed\.0" + _WB, r"dass.embeddings.conv1.\1"),
    (r"patch_embed\.2" + _WB, r"dass.embeddings.norm1.\1"),
    (r"patch_embed\.5" + _WB, r"dass.embeddings.conv2.\1"),
    (r"patch_embed\.7" + _WB, r"dass.embeddings.norm2.\1"),
    (r"layers\.(\d+)\.downsample\.1" + _WB, r"dass.stages.\1.downsample.conv.\2"),
    (r"layers\.(\d+)\.downsample\.3" + _WB, r"dass.stages.\1.downsample.norm.\2"),
    (r"classifier\.norm" + _WB, r"dass.layernorm.\1"),
    (r"classifier\.head" + _WB, r"classifier.\1"),
]
# Inside `layers.{i}.blocks.{j}.` of the original layout.
_BLOCK = r"layers\.(\d+)\.blocks\.(\d+)\.(.+)"
_BLOCK_RULES = [
    (r"norm" + _WB, r"layernorm_before.\1"),
    (r"norm2" + _WB, r"layernorm_after.\1"),
    (r"op\.in_proj\.weight", "mixer.in_proj.weight"),
    (r"op\.conv2d" + _WB, r"mixer.conv2d.\1"),
    (r"op\.x_proj_weight", "mixer.x_proj_weight"),
    (r"op\.dt_projs_weight", "mixer.dt_proj_weight"),
    (r"op\.dt_projs_bias", "mixer.dt_proj_bias"),
    (r"op\.A_logs", "mixer.A_log"),
    (r"op\.Ds", "mixer.D"),
    (r"op\.out_norm" + _WB, r"mixer.out_norm.\1"),
    (r"op\.out_proj\.weight", "mixer.out_proj.weight"),
    (r"mlp\.(fc1|fc2)" + _WB, r"mlp.\1.\2"),
]


class CheckpointConversionError(ValueError):
    """The checkpoint does not describe a DASS model this package can build."""


def load_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from a `.pth`/`.pt`/`.bin` (torch.save) or `.safetensors` file onto the CPU."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist.")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    if path.suffix not in (".pth", ".pt", ".bin", ".ckpt"):
        raise CheckpointConversionError(
            f"Unsupported checkpoint extension {path.suffix!r} for {path}: give a torch.save'd .pth or a .safetensors file."
        )
    state_dict = torch.load(str(path), map_location="cpu", weights_only=True)
    for wrapper_key in ("state_dict", "model"):
        if isinstance(state_dict, dict) and isinstance(state_dict.get(wrapper_key), dict):
            state_dict = state_dict[wrapper_key]
    if not isinstance(state_dict, dict) or not all(torch.is_tensor(v) for v in state_dict.values()):
        raise CheckpointConversionError(f"{path} does not hold a state dict (a mapping of names to tensors).")
    return state_dict


def detect_layout(keys) -> str:
    """'hub' for the remote-code layout, 'original' for the released .pth layout (with or without prefix)."""
    keys = list(keys)
    if _is_hub_layout(keys):
        return "hub"
    if any(_strip_original_prefix(k).startswith("patch_embed.") for k in keys):
        return "original"
    if any(k.startswith("dass.embeddings.") for k in keys):
        return "native"
    raise CheckpointConversionError(
        "Not a DASS checkpoint: found no patch-embedding weights (`module.v.patch_embed.*` in released .pth files, "
        f"`dass.patch_embeddings.*` in Hub files). First keys: {keys[:5]}"
    )


def _is_hub_layout(keys) -> bool:
    return any(k.startswith("dass.patch_embeddings.") for k in keys)


def _strip_original_prefix(key: str) -> str:
    for prefix in ("module.", "v."):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return key


def _apply_rules(key: str, rules) -> str | None:
    for pattern, replacement in rules:
        match = re.fullmatch(pattern, key)
        if match:
            return match.expand(replacement)
    return None


def _rename(key: str, rules) -> str | None:
    """This package's name for `key`, or None when it is not a DASS tensor."""
    renamed = _apply_rules(key, rules)
    if renamed is not None:
        return renamed
    block = re.fullmatch(_BLOCK, key)
    if block is None:
        return None
    tail = _apply_rules(block.group(3), _BLOCK_RULES)
    return None if tail is None else f"dass.stages.{block.group(1)}.blocks.{block.group(2)}.{tail}"


def to_native_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename (and, for the Hub layout, reshape) every tensor to this package's names.

    The Hub layout goes through the tables `from_pretrained` uses (`hub_layout.py`); keys they do not know are
    left for `check_state_dict` to report. For the original layout, raises `CheckpointConversionError` listing
    every key that maps to nothing.
    """
    layout = detect_layout(state_dict)
    if layout == "native":
        return dict(state_dict)
    if layout == "hub":
        return hub_state_dict_to_native(state_dict, NUM_DIRECTIONS)
    native, unknown = {}, []
    for key, tensor in state_dict.items():
        target = _rename(_strip_original_prefix(key), _ORIGINAL_RULES)
        if target is None:
            unknown.append(key)
            continue
        native[target] = tensor
    if unknown:
        raise CheckpointConversionError(
            f"{len(unknown)} key(s) of this original-layout checkpoint are not part of DASS: {sorted(unknown)}"
        )
    return native


def infer_config_kwargs(native: dict[str, torch.Tensor]) -> dict:
    """Read the architecture off a native state dict: dims, depths, labels, d_state, dt_rank, ..."""
    try:
        conv1 = native["dass.embeddings.conv1.weight"]
        dims = [native["dass.embeddings.conv2.weight"].shape[0]]
        num_labels = native["classifier.weight"].shape[0]
    except KeyError as missing:
        raise CheckpointConversionError(f"Checkpoint lacks {missing}, needed to infer the architecture.") from None
    stage_ids = sorted({int(m.group(1)) for k in native if (m := re.match(r"dass\.stages\.(\d+)\.", k))})
    num_stages = max(stage_ids, default=0) + 1
    for i in range(num_stages - 1):
        key = f"dass.stages.{i}.downsample.conv.weight"
        if key not in native:
            raise CheckpointConversionError(f"Checkpoint lacks {key}, needed to infer the width of stage {i + 1}.")
        dims.append(native[key].shape[0])
    depths = [
        len({m.group(1) for k in native if (m := re.match(rf"dass\.stages\.{i}\.blocks\.(\d+)\.", k))})
        for i in range(num_stages)
    ]
    kwargs = {"dims": dims, "depths": depths, "num_labels": num_labels, "patch_size": 2 * (conv1.shape[-1] - 1)}
    first_blocks = [i for i in range(num_stages) if depths[i] > 0]
    if first_blocks:
        i = first_blocks[0]
        prefix = f"dass.stages.{i}.blocks.0."
        kwargs["d_state"] = native[prefix + "mixer.A_log"].shape[1]
        kwargs["ssm_ratio"] = native[prefix + "mixer.in_proj.weight"].shape[0] / dims[i]
        kwargs["ssm_conv"] = native[prefix + "mixer.conv2d.weight"].shape[-1]
        kwargs["ssm_conv_bias"] = prefix + "mixer.conv2d.bias" in native
        fc1 = native.get(prefix + "mlp.fc1.weight")
        kwargs["mlp_ratio"] = fc1.shape[0] / dims[i] if fc1 is not None else 0.0
        ranks = [
            native[f"dass.stages.{s}.blocks.0.mixer.dt_proj_weight"].shape[-1] if depths[s] else None
            for s in range(num_stages)
        ]
        auto = [-(-d // 16) for d in dims]
        if any(r is not None and r != a for r, a in zip(ranks, auto)):
            kwargs["dt_rank"] = [r if r is not None else a for r, a in zip(ranks, auto)]
    return kwargs


def check_state_dict(model: torch.nn.Module, native: dict[str, torch.Tensor]) -> None:
    """Every key present, none extra, every shape equal; else one error that lists all problems."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(native))
    unexpected = sorted(set(native) - set(expected))
    mismatched = [
        f"{k}: checkpoint {tuple(native[k].shape)} vs model {expected[k]}"
        for k in sorted(set(expected) & set(native))
        if tuple(native[k].shape) != expected[k]
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {missing}")
    if unexpected:
        problems.append(f"unexpected keys: {unexpected}")
    if mismatched:
        problems.append(f"shape mismatches: {mismatched}")
    if problems:
        raise CheckpointConversionError("Checkpoint does not fit the inferred DASS architecture; " + "; ".join(problems))


def read_labels_csv(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Read an AudioSet-style `index,mid,display_name` CSV; returns (display names, mids) in index order."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"index", "mid", "display_name"} <= set(rows[0]):
        raise ValueError(f"{path}: expected a CSV with header `index,mid,display_name` (AudioSet class_labels_indices.csv).")
    rows.sort(key=lambda row: int(row["index"]))
    indices = [int(row["index"]) for row in rows]
    if indices != list(range(len(rows))):
        raise ValueError(f"{path}: label indices must be 0..{len(rows) - 1} without gaps or repeats.")
    return [row["display_name"] for row in rows], [row["mid"] for row in rows]


def build_model(state_dict: dict[str, torch.Tensor], **config_kwargs) -> DassForAudioClassification:
    """Build a `DassForAudioClassification` holding the weights of a checkpoint in any known layout."""
    native = to_native_state_dict(state_dict)
    # The released checkpoints are AudioSet taggers: multi-label, written explicitly into the config.
    config = DassConfig(**{**infer_config_kwargs(native), "problem_type": "multi_label_classification", **config_kwargs})
    model = DassForAudioClassification(config)
    check_state_dict(model, native)
    model.load_state_dict(native, strict=True)
    return model.eval()


def convert_checkpoint(
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    labels_csv: str | os.PathLike | None = None,
    **config_kwargs,
) -> DassForAudioClassification:
    """Convert a released `.pth`/`.safetensors` checkpoint into a folder that `from_pretrained` and `pipeline`
    load: config.json, model.safetensors and preprocessor_config.json.

    With `labels_csv` (AudioSet `index,mid,display_name`), the config gets the display names as `id2label` and
    the mids as `label_mids`; without it labels are `LABEL_i`. A folder in the Hub remote-code layout
    (config.json + model.safetensors) is accepted too and keeps its config's labels unless a CSV is given.
    """
    if Path(checkpoint).is_dir():
        native, folder_kwargs = _read_hub_folder(checkpoint)
    else:
        native, folder_kwargs = to_native_state_dict(load_checkpoint(checkpoint)), {}
    if labels_csv is not None:
        names, mids = read_labels_csv(labels_csv)
        num_labels = infer_config_kwargs(native)["num_labels"]
        if len(names) != num_labels:
            raise ValueError(f"{labels_csv} lists {len(names)} labels but the checkpoint's head has {num_labels}.")
        config_kwargs.setdefault("id2label", dict(enumerate(names)))
        config_kwargs.setdefault("label2id", {name: i for i, name in enumerate(names)})
        config_kwargs.setdefault("label_mids", mids)
    model = build_model(native, **{**folder_kwargs, **config_kwargs})
    return _save_model_folder(model, output_dir)


def _save_model_folder(model: DassForAudioClassification, output_dir) -> DassForAudioClassification:
    """Write what `from_pretrained` and `pipeline` load: config.json, model.safetensors, preprocessor_config.json."""
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(output_dir)
    DassFeatureExtractor().save_pretrained(output_dir)
    return model


def is_hub_remote_code_folder(folder: str | os.PathLike) -> bool:
    """Whether `folder/model.safetensors` holds the Hub remote-code layout (cheap: reads the header only)."""
    weights = Path(folder) / "model.safetensors"
    if not weights.is_file():
        return False
    with safe_open(str(weights), framework="pt") as handle:
        return _is_hub_layout(handle.keys())


def _read_hub_folder(folder: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """A Hub remote-code folder's weights in native names, and its config values (labels, drop path, ...)
    as `DassConfig` keyword arguments; refuses a config.json that contradicts the weights."""
    folder = Path(folder)
    with open(folder / "config.json", encoding="utf-8") as handle:
        hub_config = json.load(handle)
    config = DassConfig.from_dict({k: v for k, v in hub_config.items() if k not in ("architectures", "auto_map")})
    native = to_native_state_dict(load_file(str(folder / "model.safetensors")))
    inferred = infer_config_kwargs(native)
    for name in ("dims", "depths", "d_state"):
        if getattr(config, name) != inferred.get(name, getattr(config, name)):
            raise CheckpointConversionError(
                f"{folder}/config.json says {name}={getattr(config, name)} but the weights have {inferred[name]}."
            )
    kwargs = {k: v for k, v in config.to_diff_dict().items() if k not in ("model_type", "transformers_version")}
    return native, {**kwargs, **inferred, "id2label": config.id2label, "label2id": config.label2id}


def convert_hub_folder(folder: str | os.PathLike, output_dir: str | os.PathLike) -> DassForAudioClassification:
    """Rewrite a Hub remote-code folder (config.json with `num_classes`, `dims`, ... and `dass.*` weights) in
    this package's layout, keeping the folder's config values (labels, drop path, ...)."""
    native, kwargs = _read_hub_folder(folder)
    return _save_model_folder(build_model(native, **kwargs), output_dir)


__all__ = [
    "CheckpointConversionError",
    "build_model",
    "check_state_dict",
    "convert_checkpoint",
    "convert_hub_folder",
    "detect_layout",
    "infer_config_kwargs",
    "is_hub_remote_code_folder",
    "load_checkpoint",
    "read_labels_csv",
    "to_native_state_dict",
]
