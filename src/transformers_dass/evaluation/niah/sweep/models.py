"""Models of the NIAH sweep: DASS or Audio Spectrogram Transformer classifiers, loaded with their normalisation;
AST's position embeddings rebuilt for each haystack length."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForAudioClassification,
)

from ....audio.fbank import AUDIOSET_MEAN, AUDIOSET_STD
from ....model.feature_extraction_dass import DassFeatureExtractor
from ..haystack import ast_position_embeddings
from .arguments import NiahArguments

logger = logging.getLogger(__name__)

AST_MODEL_TYPE = "audio-spectrogram-transformer"


@dataclass
class LoadedModel:
    """A classifier in eval mode with the normalisation `(x - mean) / (2 * std)` of its features."""

    name: str
    path: str
    model: torch.nn.Module
    is_ast: bool
    mean: float
    std: float
    num_mel_bins: int
    ast_table: torch.Tensor | None = None  # AST's position embeddings at its training length (CPU)



def parse_model_specs(specs: list[str]) -> dict[str, str]:
    """{name: path} of `name=path` entries; a bare path is named after its last component."""
    models = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec.rstrip("/")).name, spec
        if not name or not path:
            raise ValueError(f"--models entry {spec!r} must be name=path or a path")
        if name in models:
            raise ValueError(f"two --models entries are named {name!r}; name them with name=path")
        models[name] = path
    return models


def is_ast_model(path: str, args: NiahArguments) -> bool:
    """Whether the folder / Hub id holds an Audio Spectrogram Transformer (its config only is read)."""
    return AutoConfig.from_pretrained(path, cache_dir=args.cache_dir, token=args.token).model_type == AST_MODEL_TYPE


def load_model(name: str, path: str, args: NiahArguments) -> LoadedModel:
    """A DASS or AST audio classifier in eval mode, with the normalisation of its feature extractor."""
    hub = {"cache_dir": args.cache_dir, "token": args.token}
    config = AutoConfig.from_pretrained(path, **hub)
    if config.model_type not in ("dass", AST_MODEL_TYPE):
        raise ValueError(
            f"model {name!r} ({path}) is a {config.model_type!r} model; run_niah.py runs DASS and Audio Spectrogram "
            "Transformer (ASTForAudioClassification) models, which read normalised kaldi fbank input_values"
        )
    model = AutoModelForAudioClassification.from_pretrained(path, **hub).eval()
    try:
        extractor = AutoFeatureExtractor.from_pretrained(path, **hub)
    except OSError:
        logger.warning(f"{path} has no preprocessor_config.json: using the AudioSet normalisation of DASS / AST")
        extractor = DassFeatureExtractor()
    mean, std = getattr(extractor, "mean", AUDIOSET_MEAN), getattr(extractor, "std", AUDIOSET_STD)
    if not getattr(extractor, "do_normalize", True):
        mean, std = 0.0, 0.5  # (x - 0) / (2 * 0.5): the identity
    loaded = LoadedModel(
        name=name,
        path=path,
        model=model,
        is_ast=config.model_type == AST_MODEL_TYPE,
        mean=float(mean),
        std=float(std),
        num_mel_bins=int(getattr(config, "num_mel_bins", 128)),
    )
    if loaded.is_ast:
        loaded.ast_table = model.audio_spectrogram_transformer.embeddings.position_embeddings.detach().cpu().clone()
    return loaded


def fit_ast_to_length(loaded: LoadedModel, frames: int, method: str, device: torch.device) -> None:
    """Give an AST the position embeddings of a `frames`-frame input, built from its original table."""
    config = loaded.model.config
    embeddings = loaded.model.audio_spectrogram_transformer.embeddings
    frequency = (config.num_mel_bins - config.patch_size) // config.frequency_stride + 1
    time_patches = (frames - config.patch_size) // config.time_stride + 1
    if time_patches < 1:
        raise ValueError(f"{frames} frames are fewer than one AST patch ({config.patch_size})")
    table = ast_position_embeddings(loaded.ast_table.to(device), frequency, time_patches, method)
    embeddings.position_embeddings = torch.nn.Parameter(table, requires_grad=False)
    config.max_length = frames

