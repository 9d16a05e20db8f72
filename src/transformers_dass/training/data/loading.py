"""Opening audio datasets (Hub AudioSet, parquet shards, audiofolder, ...) so that audio stays encoded bytes,
and splitting streams across ranks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import datasets
from datasets import (
    Audio,
    ClassLabel,
    Dataset,
    Features,
    IterableDataset,
    LargeList,
    List,
    Value,
)
from datasets.distributed import split_dataset_by_node

from ...audio.io import AUDIO_SUFFIXES

# The Hub AudioSet datasets this package knows the schema of: `video_id`, `audio` (FLAC at 48 or 44.1 kHz),
# `labels` (list of mids), `human_labels` (list of display names). Configs: "balanced", "unbalanced", "full".
AUDIOSET_DATASET = "agkphysics/AudioSet"
# Files the audiofolder builder takes as audio (the formats libsndfile reads).


def load_audio_dataset(
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    split: str = "train",
    data_files: str | Sequence[str] | None = None,
    data_dir: str | None = None,
    streaming: bool = False,
    audio_column: str = "audio",
    columns: Sequence[str] | None = None,
    cache_dir: str | None = None,
    token: str | bool | None = None,
) -> Dataset | IterableDataset:
    """A split of an audio dataset whose audio column yields encoded bytes (`Audio(decode=False)`).

    Give `data_files` (paths or globs of parquet shards, e.g. written by the test suite or by
    `scripts/precompute_teacher_logits.py`) or `dataset_name` (a Hub id such as `agkphysics/AudioSet`, or a
    builder such as `audiofolder` with `data_dir`). Decoding is left to `decode_audio` (soundfile), so neither
    torchcodec nor ffmpeg is needed.

    Args:
        columns: for parquet data, read only these columns (e.g. only the labels for counting them).
    """
    if (dataset_name is None) == (data_files is None):
        raise ValueError("give exactly one of `dataset_name` (Hub or builder name) and `data_files` (parquet globs)")
    kwargs = {"split": split, "streaming": streaming, "cache_dir": cache_dir, "token": token}
    if columns is not None:
        kwargs["columns"] = list(columns)
    if data_files is not None:
        files = [data_files] if isinstance(data_files, str) else list(data_files)
        dataset = datasets.load_dataset("parquet", data_files={split: files}, **kwargs)
    else:
        if dataset_name == "audiofolder" and data_dir is not None:
            kwargs["features"] = audiofolder_features(data_dir, audio_column)
        dataset = datasets.load_dataset(dataset_name, dataset_config_name, data_dir=data_dir, **kwargs)
    return keep_audio_encoded(dataset, audio_column)


def audiofolder_features(data_dir: str, audio_column: str = "audio") -> Features:
    """Features for the `audiofolder` builder with the audio kept as file paths.

    The builder's default `Audio` feature needs torchcodec even to store a path; with these features it stores the
    path as a string (read later by `decode_audio`) and the label as a `ClassLabel` of the folder names, as
    audiofolder infers them (the parent folder of each file).
    """
    root = Path(data_dir)
    if any(root.rglob("metadata.*")):
        raise ValueError(
            f"{data_dir} has a metadata file; load it with `datasets.load_dataset` and your own `features` (audio as "
            "Value('string') paths, or convert the folder to parquet shards) instead of through load_audio_dataset"
        )
    names = sorted({path.parent.name for path in root.rglob("*") if path.suffix.lower() in AUDIO_SUFFIXES})
    features = {audio_column: Value("string")}
    if len(names) > 1:
        features["label"] = ClassLabel(names=names)
    return Features(features)


def keep_audio_encoded(dataset: Dataset | IterableDataset, audio_column: str = "audio") -> Dataset | IterableDataset:
    """`dataset` with its `Audio` column cast to `Audio(decode=False)`; other datasets are returned as they are."""
    features = dataset.features
    if features is not None and isinstance(features.get(audio_column), Audio):
        return dataset.cast_column(audio_column, Audio(decode=False))
    return dataset


def class_label_names(dataset: Dataset | IterableDataset, label_column: str = "labels") -> list[str] | None:
    """Names behind the integer labels of `label_column` when it is a `ClassLabel` (or a list of them)."""
    feature = (dataset.features or {}).get(label_column)
    while isinstance(feature, (List, LargeList)):
        feature = feature.feature
    return list(feature.names) if isinstance(feature, ClassLabel) else None


def split_for_node(dataset: Dataset | IterableDataset, rank: int, world_size: int) -> Dataset | IterableDataset:
    """The part of `dataset` that process `rank` of `world_size` reads (`datasets.distributed.split_dataset_by_node`).

    Streams whose number of shards is a multiple of `world_size` are split by shards (each rank reads only its
    files); otherwise every rank reads the stream and keeps one example in `world_size`. Inside each rank,
    `datasets` splits the rank's shards across dataloader workers by itself. Shuffle with a fixed seed before
    splitting so that every rank shuffles the shards the same way.
    """
    if world_size <= 1:
        return dataset
    return split_dataset_by_node(dataset, rank=rank, world_size=world_size)


__all__ = [
    "AUDIOSET_DATASET",
    "audiofolder_features",
    "class_label_names",
    "keep_audio_encoded",
    "load_audio_dataset",
    "split_for_node",
]
