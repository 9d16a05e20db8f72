"""Teacher logits computed beforehand (scripts/precompute_teacher_logits.py), looked up by clip id."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from datasets import Dataset

TEACHER_LOGITS_COLUMN = "teacher_logits"


class TeacherLogitsTable:
    """Teacher logits of many clips, memory-mapped from parquet shards and indexed by a key column.

    This is how logits written as separate shards ("logits_only" mode of the precompute script) are streamed
    beside the audio: the collator looks up each clip's logits by its id, so the audio stream can be shuffled
    and sharded freely. Only the key -> row index lives in memory; the logits stay in the Arrow cache on disk.

    Args:
        data_files: parquet files or globs with `key_column` and `logits_column` (a list of floats per row).
        key_column: the clip id column shared with the audio dataset (AudioSet: `video_id`).
        logits_column: the column of teacher logits.
        cache_dir: where `datasets` keeps the Arrow cache of the shards.
    """

    def __init__(
        self,
        data_files: str | Sequence[str],
        key_column: str = "video_id",
        logits_column: str = TEACHER_LOGITS_COLUMN,
        cache_dir: str | None = None,
    ):
        files = [data_files] if isinstance(data_files, str) else list(data_files)
        table = Dataset.from_parquet(files, columns=[key_column, logits_column], cache_dir=cache_dir)
        self.key_column = key_column
        self._rows = {key: row for row, key in enumerate(table[key_column])}
        if len(self._rows) != len(table):
            raise ValueError(f"{files}: the key column {key_column!r} has repeated values; keys must be unique")
        self._logits = table.select_columns([logits_column]).with_format("numpy")
        self._column = logits_column

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key) -> bool:
        return key in self._rows

    def get(self, key) -> np.ndarray | None:
        """Logits (num_labels,) float32 of the clip `key`, or None if the table has none for it."""
        row = self._rows.get(key)
        if row is None:
            return None
        return np.asarray(self._logits[row][self._column], dtype=np.float32)


__all__ = ["TEACHER_LOGITS_COLUMN", "TeacherLogitsTable"]
