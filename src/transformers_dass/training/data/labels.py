"""Label vocabularies: a clip's labels (AudioSet mids, display names or class indices) -> a multi-hot vector."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
from transformers.utils import logging

logger = logging.get_logger(__name__)

# After this many distinct unknown labels, each further one is only counted, not logged.
MAX_LOGGED_UNKNOWN = 20


class LabelEncoder:
    """Maps labels to indices of a fixed vocabulary and encodes clips as multi-hot targets.

    A label may be a mid (`/m/09x0r`), a display name (`Speech`) or an int class index. Ints are indices into
    `index_names` when given (the names of a dataset's `ClassLabel`), otherwise into the vocabulary itself.
    Labels outside the vocabulary are counted in `unknown_counts` and logged (each distinct one once).

    Args:
        names: display names in label order, (num_labels,).
        mids: machine ids in label order, (num_labels,), if known.
        index_names: names that a dataset's integer labels stand for.
    """

    def __init__(
        self, names: Sequence[str], mids: Sequence[str] | None = None, index_names: Sequence[str] | None = None
    ):
        self.names = [str(name) for name in names]
        self.mids = None if mids is None else [str(mid) for mid in mids]
        if self.mids is not None and len(self.mids) != len(self.names):
            raise ValueError(f"{len(self.mids)} mids for {len(self.names)} label names; give one mid per label.")
        self.index_names = None if index_names is None else [str(name) for name in index_names]
        self._index = {name: i for i, name in enumerate(self.names)}
        if self.mids is not None:
            # mids win over names: a mid never equals another label's display name in AudioSet.
            self._index.update({mid: i for i, mid in enumerate(self.mids)})
        self.unknown_counts: Counter = Counter()

    @classmethod
    def from_csv(cls, path: str | os.PathLike, **kwargs) -> "LabelEncoder":
        """Vocabulary of an AudioSet-style `index,mid,display_name` CSV (e.g. class_labels_indices.csv)."""
        from ...model.conversion import read_labels_csv

        names, mids = read_labels_csv(path)
        return cls(names, mids, **kwargs)

    @classmethod
    def from_config(cls, config, **kwargs) -> "LabelEncoder":
        """Vocabulary of a model config: `id2label` names and, when the config has them, `label_mids`."""
        names = [config.id2label[i] for i in range(config.num_labels)]
        return cls(names, getattr(config, "label_mids", None), **kwargs)

    @property
    def num_labels(self) -> int:
        return len(self.names)

    def same_vocabulary(self, config) -> bool:
        """Whether `config`'s labels are this vocabulary in the same order (by mids when both have them)."""
        if config.num_labels != self.num_labels:
            return False
        config_mids = getattr(config, "label_mids", None)
        if config_mids is not None and self.mids is not None:
            return list(config_mids) == self.mids
        return [config.id2label[i] for i in range(config.num_labels)] == self.names

    def indices(self, labels, report: bool = True) -> tuple[list[int], list]:
        """(known label indices, unknown labels) of one clip's `labels` (one label or a list of them)."""
        known, unknown = [], []
        for label in _as_list(labels):
            index = self._lookup(label)
            if index is None:
                unknown.append(label)
            else:
                known.append(index)
        if report:
            for label in unknown:
                self._report_unknown(label)
        return known, unknown

    def encode(self, labels) -> np.ndarray | None:
        """Multi-hot (num_labels,) float32 target of one clip, or None when it has labels and none is known.

        An empty label list gives an all-zero target (a clip explicitly without events). A clip whose labels are
        all unknown gives None so that the caller skips it instead of training on a target of "no event".
        """
        known, unknown = self.indices(labels)
        if unknown and not known:
            return None
        target = np.zeros(self.num_labels, dtype=np.float32)
        target[known] = 1.0
        return target

    def _lookup(self, label) -> int | None:
        if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
            if self.index_names is not None:
                return self._index.get(self.index_names[label]) if 0 <= label < len(self.index_names) else None
            return int(label) if 0 <= label < self.num_labels else None
        return self._index.get(str(label))

    def _report_unknown(self, label) -> None:
        self.unknown_counts[label] += 1
        if self.unknown_counts[label] == 1 and len(self.unknown_counts) <= MAX_LOGGED_UNKNOWN:
            logger.warning(
                f"label {label!r} is not in the vocabulary of {self.num_labels} labels; it is left out of the "
                "targets (LabelEncoder.unknown_counts counts every occurrence). Pass the labels CSV that matches "
                "the data (`--labels_csv`) if this is unexpected."
            )


def _as_list(labels) -> list:
    """One clip's labels as a flat list: a single label becomes a one-element list; None, no labels."""
    if labels is None:
        return []
    if isinstance(labels, (str, bytes, int, np.integer)):
        return [labels.decode() if isinstance(labels, bytes) else labels]
    if isinstance(labels, np.ndarray):
        return labels.reshape(-1).tolist()
    if isinstance(labels, Iterable):
        return list(labels)
    raise TypeError(f"labels must be a label or a list of labels (mids, names or ints), got {type(labels).__name__}")


__all__ = ["LabelEncoder"]
