"""Class-balanced sampling of the unbalanced AudioSet in a form that works on streams.

The original recipe gives clip i the weight `w_i = sum over its labels l of 1 / count_l` (count_l: clips of the
training set with label l) and draws `N` clips per epoch with replacement, with probability proportional to w.
A stream cannot be drawn from at random, so `ClassBalancedRepeat` instead emits each clip `r_i = w_i / mean(w)`
times on average (`floor(r_i)` copies plus one more with probability `frac(r_i)`), and a shuffle buffer after it
spreads the copies. Each clip then appears as often in expectation as under the weighted sampler, and an epoch
still has about N clips.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

import numpy as np
from datasets import Dataset, IterableDataset

from .labels import LabelEncoder


def count_labels(label_lists: Iterable, encoder: LabelEncoder) -> tuple[np.ndarray, int]:
    """(clips per label (num_labels,) int64, number of clips) over an iterable of per-clip label lists."""
    counts = np.zeros(encoder.num_labels, dtype=np.int64)
    clips = 0
    for labels in label_lists:
        known, _ = encoder.indices(labels, report=False)
        counts[sorted(set(known))] += 1
        clips += 1
    return counts, clips


def save_label_counts(path: str | os.PathLike, counts: np.ndarray, clips: int, encoder: LabelEncoder) -> None:
    """Write counts as JSON `{"clips": N, "counts": {label: count}}`, keyed by mid when known, else by name."""
    keys = encoder.mids or encoder.names
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"clips": int(clips), "counts": dict(zip(keys, map(int, counts)))}, handle, indent=1)


def load_label_counts(path: str | os.PathLike, encoder: LabelEncoder) -> tuple[np.ndarray, int]:
    """Read what `save_label_counts` wrote, in `encoder`'s label order (labels absent from the file count 0)."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    counts = np.zeros(encoder.num_labels, dtype=np.int64)
    for label, count in data["counts"].items():
        known, _ = encoder.indices(label, report=False)
        counts[known] = count
    return counts, int(data["clips"])


def clip_weight(indices: Iterable[int], counts: np.ndarray) -> float:
    """The original per-clip weight: sum over the clip's labels of 1 / count (labels never counted add 0)."""
    return float(sum(1.0 / counts[i] for i in set(indices) if counts[i] > 0))


class ClassBalancedRepeat:
    """Batched `map` function that repeats each row `r_i = w_i / mean(w)` times in expectation.

    Args:
        encoder: the label vocabulary.
        counts: clips per label (num_labels,) over the whole training set.
        clips: number of clips in the training set (the mean weight is `labels with a count / clips`).
        label_column: the column holding each clip's labels.
        seed: seed of the draws of the fractional copies; the same seed gives the same repeats.
    """

    def __init__(
        self, encoder: LabelEncoder, counts: np.ndarray, clips: int, label_column: str = "labels", seed: int = 0
    ):
        self.encoder = encoder
        self.counts = np.asarray(counts, dtype=np.int64)
        # sum_i w_i = sum_l count_l * (1 / count_l) = number of labels that occur at all.
        self.mean_weight = np.count_nonzero(self.counts) / max(int(clips), 1)
        if self.mean_weight == 0:
            raise ValueError("class-balanced sampling needs label counts with at least one non-zero count")
        self.label_column = label_column
        self.rng = np.random.default_rng(seed)

    def repeats(self, labels) -> int:
        """How many copies of a clip with these labels to emit (random, mean `w / mean(w)`)."""
        known, _ = self.encoder.indices(labels, report=False)
        ratio = clip_weight(known, self.counts) / self.mean_weight
        whole = int(ratio)
        return whole + int(self.rng.random() < ratio - whole)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        repeats = [self.repeats(labels) for labels in batch[self.label_column]]
        return {name: [v for v, r in zip(values, repeats) for _ in range(r)] for name, values in batch.items()}


def class_balanced_stream(
    dataset: Dataset | IterableDataset,
    repeat: ClassBalancedRepeat,
    buffer_size: int = 1000,
    seed: int = 0,
    input_shards: int = 10,
) -> IterableDataset:
    """`dataset` as a stream in which each clip is repeated per `repeat`, then shuffled with a buffer fed by
    `input_shards` shards at a time (the shard order is shuffled too).

    A map-style dataset is first turned into a stream (`to_iterable_dataset`): train with `max_steps`.
    """
    if isinstance(dataset, Dataset):
        dataset = dataset.to_iterable_dataset(num_shards=min(64, max(1, len(dataset))))
    return dataset.map(repeat, batched=True, batch_size=256).shuffle(
        seed=seed, buffer_size=buffer_size, max_buffer_input_shards=input_shards
    )


__all__ = [
    "ClassBalancedRepeat",
    "class_balanced_stream",
    "clip_weight",
    "count_labels",
    "load_label_counts",
    "save_label_counts",
]
