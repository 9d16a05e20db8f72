"""Randomly initialised DASS models saved as folders, for the benchmarks that load a model by path (`dass tag`,
`dass listen`): their speed is that of the trained model, their outputs mean nothing."""

from __future__ import annotations

from pathlib import Path

import torch


def save_random_dass_small(folder: Path) -> Path:
    """DASS-small (`DassConfig.small()`, 527 labels, weights drawn with seed 0) and the default feature extractor,
    saved into `folder`; returns `folder`."""
    from transformers_dass import (
        DassConfig,
        DassFeatureExtractor,
        DassForAudioClassification,
    )

    torch.manual_seed(0)
    DassForAudioClassification(DassConfig.small()).save_pretrained(folder)
    DassFeatureExtractor().save_pretrained(folder)
    return folder
