"""Strong labels: events `(onset, offset, label)` of each clip, and the per-step targets they make.

AudioSet-strong (Hershey et al., ICASSP 2021) gives them as a tab-separated table with the header
`segment_id  start_time_seconds  end_time_seconds  label`, one row per event, labels as AudioSet mids (`/m/...`),
times in seconds from the start of the 10 s segment; the framed evaluation table adds a `present` column
(`PRESENT` / `NOT_PRESENT`), whose `NOT_PRESENT` rows are not events and are dropped. `StrongLabelTable` reads it
with `datasets` (the csv builder, tab-delimited) and finds a clip's events by its id, as `TeacherLogitsTable` finds
its teacher logits: the audio can be streamed, shuffled and sharded freely.

The key rule: a segment id is `{YouTube id}_{segment start in ms}` (`--4gqARaEJE_0`, `-0SdAVK79lg_30000`). AudioSet
holds one segment per video, and the Hub AudioSet parquet (`agkphysics/AudioSet`) names a clip by its YouTube id
alone (`video_id`), so by default (`match="video_id"`) the `_{ms}` suffix is dropped before matching (a YouTube id may
itself hold `_`: only the last one splits). For audio rows that carry the whole segment id, pass `match="segment_id"`;
`key_column` names the rows' column either way.

Events become targets on the frame model's grid (`model/steps.py`, `config.fine_step_frames`): a step is positive
for a label when that label's events, merged, cover at least `MIN_STEP_COVERAGE` (half) of the step.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import datasets
import numpy as np
from datasets import Dataset, Features, IterableDataset, List, Value

from .labels import LabelEncoder

STRONG_COLUMNS = ("segment_id", "start_time_seconds", "end_time_seconds", "label")
PRESENT_COLUMN = "present"
KEY_RULES = ("video_id", "segment_id")
EVENTS_COLUMN = "events"
# A clip's events as a row holds them: one list per field, the i-th entries make the i-th event.
EVENT_FEATURES = {"onset": List(Value("float64")), "offset": List(Value("float64")), "label": List(Value("string"))}
# A step is positive for a label when the label's events cover at least this share of it (the rule under which the
# issue measured perfect labels on 0.32 s / 0.16 s / 40 ms grids).
MIN_STEP_COVERAGE = 0.5
# Seconds granted to float rounding in that comparison, so that an event edge exactly on a half step counts
# whichever way the step times round (they are multiples of 10 ms, not exact in binary).
COVERAGE_SLACK_S = 1e-9
# Batch keys of strong labels (`DassAudioCollator` writes them, `DassDistillationTrainer` reads them).
FRAME_LABELS_KEY, STRONG_KEY, FRAME_MASK_KEY = "frame_labels", "strong", "frame_mask"

__all__ = [
    "EVENTS_COLUMN",
    "FRAME_LABELS_KEY",
    "FRAME_MASK_KEY",
    "MIN_STEP_COVERAGE",
    "STRONG_COLUMNS",
    "STRONG_KEY",
    "StrongLabelTable",
    "event_targets",
    "join_strong_labels",
    "segment_key",
]

_SEGMENT_ID = re.compile(r"(.+)_(\d+)")


def segment_key(segment_id: str, match: str = "video_id") -> str:
    """The key that audio rows are matched on: the YouTube id of a `YTID_STARTMS` segment id for
    `match="video_id"`, the segment id itself for `match="segment_id"`."""
    if match not in KEY_RULES:
        raise ValueError(f"match must be one of {KEY_RULES}, got {match!r}")
    if match == "segment_id":
        return segment_id
    found = _SEGMENT_ID.fullmatch(segment_id)
    if found is None:
        raise ValueError(
            f"segment id {segment_id!r} is not YTID_STARTMS (e.g. '--4gqARaEJE_0'); if the audio rows carry these ids "
            "as they are, read the table with match='segment_id'"
        )
    return found.group(1)


class StrongLabelTable:
    """The events of many clips from AudioSet-strong-style tables, looked up by clip id.

    Only key -> row range lives in memory; the events stay in the Arrow cache on disk.

    Args:
        data_files: tab-separated files (or globs) with the header `STRONG_COLUMNS` (and optionally `present`).
        key_column: the audio rows' column that holds their id (`video_id` in the Hub AudioSet parquet).
        match: how a segment id becomes that id: `"video_id"` drops its `_{start ms}` suffix, `"segment_id"`
            keeps it whole (see the module docstring).
        cache_dir: where `datasets` keeps the Arrow cache.
    """

    def __init__(
        self,
        data_files: str | Sequence[str],
        key_column: str = "video_id",
        match: str = "video_id",
        cache_dir: str | None = None,
    ):
        files = [data_files] if isinstance(data_files, str) else list(data_files)
        # na_filter off: ids and mids are text, never missing values
        table = datasets.load_dataset(
            "csv", data_files=files, delimiter="\t", na_filter=False, split="train", cache_dir=cache_dir
        )
        missing = [name for name in STRONG_COLUMNS if name not in table.column_names]
        if missing:
            raise ValueError(
                f"{files}: no column {missing}; an AudioSet-strong table is tab-separated with the header "
                f"{' '.join(STRONG_COLUMNS)} (it has {table.column_names})"
            )
        if PRESENT_COLUMN in table.column_names:
            table = table.filter(
                lambda present: [value != "NOT_PRESENT" for value in present], input_columns=PRESENT_COLUMN, batched=True
            )
        table = table.select_columns(list(STRONG_COLUMNS)).sort("segment_id").flatten_indices()
        self.key_column = key_column
        self.match = match
        self._table = table
        self._rows: dict[str, tuple[int, int]] = {}
        segments = table["segment_id"]
        start = 0
        for row in range(1, len(segments) + 1):
            if row == len(segments) or segments[row] != segments[start]:
                key = segment_key(segments[start], match)
                if key in self._rows:
                    raise ValueError(
                        f"{files}: two segments give the key {key!r} under match={match!r}; use match='segment_id' "
                        "with audio rows that carry whole segment ids"
                    )
                self._rows[key] = (start, row)
                start = row

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key) -> bool:
        return key in self._rows

    def get(self, key) -> dict[str, list] | None:
        """The events of clip `key` as `{"onset": [...], "offset": [...], "label": [...]}` (seconds, mids), or None
        when the table does not annotate it."""
        span = self._rows.get(key)
        if span is None:
            return None
        rows = self._table[span[0] : span[1]]
        return {"onset": rows["start_time_seconds"], "offset": rows["end_time_seconds"], "label": rows["label"]}


def join_strong_labels(
    dataset: Dataset | IterableDataset, table: StrongLabelTable, events_column: str = EVENTS_COLUMN
) -> Dataset | IterableDataset:
    """`dataset` with a column `events_column` holding each row's events from `table` (looked up by the row's
    `table.key_column`), None for rows the table does not annotate (weakly labelled clips)."""
    if dataset.features is not None and table.key_column not in dataset.features:
        raise ValueError(
            f"the audio rows have no column {table.key_column!r} to join on (they have {list(dataset.features)}); "
            "pass StrongLabelTable(key_column=...)"
        )
    features = None
    if dataset.features is not None:
        features = Features({**dataset.features, events_column: EVENT_FEATURES})
    return dataset.map(lambda row: {events_column: table.get(row[table.key_column])}, features=features)


def event_targets(events: dict, encoder: LabelEncoder, times: np.ndarray) -> np.ndarray:
    """(steps, num_labels) float32 0/1 targets of one clip's events on a grid of steps.

    Args:
        events: `{"onset": [...], "offset": [...], "label": [...]}` in seconds; labels as `encoder` knows them
            (mids, names or indices; unknown ones are left out and counted by the encoder).
        encoder: the label vocabulary.
        times: (steps, 2) start and end of each step in seconds (`model.steps.step_times`).

    A step is 1 for a label when the union of that label's events covers at least `MIN_STEP_COVERAGE` of the step.
    """
    starts, ends = times[:, 0], times[:, 1]
    spans: dict[int, list[tuple[float, float]]] = {}
    for onset, offset, label in zip(events["onset"], events["offset"], events["label"]):
        known, _ = encoder.indices(label)
        for index in known:
            spans.setdefault(index, []).append((float(onset), float(offset)))
    targets = np.zeros((len(times), encoder.num_labels), dtype=np.float32)
    for index, intervals in spans.items():
        covered = np.zeros(len(times))
        for onset, offset in _union(intervals):
            covered += np.clip(np.minimum(ends, offset) - np.maximum(starts, onset), 0.0, None)
        targets[:, index] = covered >= MIN_STEP_COVERAGE * (ends - starts) - COVERAGE_SLACK_S
    return targets


def _union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Overlapping or touching intervals merged, so that two events of one label covering the same time count once."""
    merged: list[list[float]] = []
    for onset, offset in sorted(intervals):
        if merged and onset <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], offset)
        else:
            merged.append([onset, offset])
    return [(onset, offset) for onset, offset in merged]
