"""The per-step embeddings `dass tag --segments --step-embeddings STEPS.parquet` writes: one row per 0.32 s step.

Columns:
    id          str        the input's key (the `id` of its row in the table)
    step        int32      the step's index in the recording, from 0
    start_s     float64    where the step starts in seconds (`32 * step` input frames of 10 ms: 0.32 s * step)
    end_s       float64    where it ends (0.32 s later; the last step ends with the audio), as segments' start_s/end_s
    embedding   [float32]  `hidden_size` values: the last hidden state averaged over frequency at that step
                (`model.readout.step_hidden_states`, what the frame scores are read from)

Only the steps that hold audio are written (a clip padded to 10.24 s keeps its own steps), and nothing for an input
with an error. Parquet only: an hour of audio is 11,250 rows of `hidden_size` floats (35 MB for dass-small).

As the table's rows, they are written in shards as the run goes, into the table's folder `OUT.parts/`
(`steps-rank00000-000001.parquet`, ...), and each process writes its step shard before the table shard that holds
the same inputs: an input the table counts as done has its steps on disk, so a resumed run needs nothing more.
Process 0 merges them into STEPS at the end, one shard at a time (memory: one shard). The rows of an input are
together, in step order; the inputs come in the order they were tagged (not the table's order: join on `id`). An
input tagged more than once (a kill before its table shard, `--retry-failed`) keeps the steps of its newest shard.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..inference.classify import StepEmbeddings
from .store import next_shard_number, shards_oldest_first
from .table import atomic_path, require_pyarrow

__all__ = ["STEP_COLUMNS", "StepShardWriter", "check_step_path", "merge_steps", "step_rows", "step_table"]

STEP_COLUMNS = ("id", "step", "start_s", "end_s", "embedding")
STEP_SHARD_NAME = re.compile(r"^steps-rank(\d{5})-(\d{6})\.parquet$")
# Embedding values buffered per process before a step shard is written even if the table's shard is not due yet:
# 2**24 float32 = 64 MB (about 1.9 h of audio for dass-small's 768 values a step).
STEP_SHARD_VALUES = 1 << 24


def check_step_path(path: str | os.PathLike, output: str | os.PathLike | None) -> Path:
    """`path` as a Path if it can take the per-step embeddings of a run writing `output`; else a ValueError."""
    path = Path(path)
    if path.suffix.lower() != ".parquet":
        raise ValueError(
            f"--step-embeddings writes Parquet only (one row of hidden_size floats per 0.32 s step is too large for "
            f"CSV or JSONL); got {path}: name it e.g. {path.with_suffix('.parquet').name}"
        )
    if output is not None and path.resolve() == Path(output).resolve():
        raise ValueError(f"--step-embeddings {path} is the table itself; give the per-step embeddings their own file")
    return path


def step_schema():
    pa = require_pyarrow()
    return pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("step", pa.int32()),
            pa.field("start_s", pa.float64()),
            pa.field("end_s", pa.float64()),
            pa.field("embedding", pa.list_(pa.float32())),  # the model's own float32, no rounding
        ]
    )


def step_table(items: list[tuple[str, StepEmbeddings]]):
    """A pyarrow Table with `STEP_COLUMNS` of the steps of `items` ((id, steps) pairs), built from the arrays
    without a Python float per value."""
    pa = require_pyarrow()
    counts = [len(steps.times) for _, steps in items]
    width = items[0][1].embeddings.shape[1] if items else 0
    ids = np.repeat(np.array([key for key, _ in items], dtype=object), counts)
    step = np.concatenate([np.arange(count, dtype=np.int32) for count in counts]) if items else np.empty(0, np.int32)
    times = np.concatenate([steps.times for _, steps in items]) if items else np.empty((0, 2))
    values = (
        np.concatenate([steps.embeddings.numpy().reshape(-1) for _, steps in items]) if items else np.empty(0)
    ).astype(np.float32, copy=False)
    # int32 offsets (list<float32>, as the table's `embedding`); a shard past 2**31 values raises here, not wraps
    offsets = pa.array(np.arange(len(ids) + 1, dtype=np.int64) * width, pa.int32())
    embedding = pa.ListArray.from_arrays(offsets, pa.array(values))
    columns = [pa.array(ids, pa.string()), pa.array(step), pa.array(times[:, 0]), pa.array(times[:, 1]), embedding]
    return pa.Table.from_arrays(columns, schema=step_schema())


def step_rows(items: list[tuple[str, StepEmbeddings]]) -> list[dict]:
    """The rows of `items` as dicts (`tag()` without an output returns them so), float32 values as Python floats."""
    return [
        {"id": key, "step": k, "start_s": float(start), "end_s": float(end), "embedding": vector}
        for key, steps in items
        for k, ((start, end), vector) in enumerate(zip(steps.times.tolist(), steps.embeddings.tolist()))
    ]


class StepShardWriter:
    """Buffers one process's per-step embeddings and writes them as numbered shards into `parts`.

    `flush` writes what is buffered (the table's `ShardWriter` calls it before each of its shards); `add` also
    writes once `max_values` embedding values are buffered, so that long recordings do not pile up.
    """

    def __init__(self, parts: str | os.PathLike, rank: int, max_values: int = STEP_SHARD_VALUES):
        self.parts = Path(parts)
        self.rank = rank
        self.max_values = max_values
        self._next = next_shard_number(self.parts, STEP_SHARD_NAME, rank)
        self._buffer: list[tuple[str, StepEmbeddings]] = []
        self._values = 0

    def add(self, items: list[tuple[str, StepEmbeddings]]) -> None:
        self._buffer += items
        self._values += sum(steps.embeddings.numel() for _, steps in items)
        if self._values >= self.max_values:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        pa = require_pyarrow()
        with atomic_path(self.parts / f"steps-rank{self.rank:05d}-{self._next:06d}.parquet") as temporary:
            pa.parquet.write_table(step_table(self._buffer), str(temporary))
        self._next += 1
        self._buffer, self._values = [], 0


def merge_steps(parts: str | os.PathLike, path: str | os.PathLike, keep: set[str]) -> int:
    """Write the step shards in `parts` into `path` (atomically), one shard in memory at a time: the steps of every
    id in `keep`, each from the newest shard holding it. Returns the rows written."""
    pa = require_pyarrow()
    import pyarrow.compute  # noqa: F401 - pa.compute below

    shards = shards_oldest_first(Path(parts), STEP_SHARD_NAME)
    newest: dict[str, int] = {}
    for number, shard in enumerate(shards):  # ids only: a small read
        for key in pa.parquet.read_table(str(shard), columns=["id"]).column("id").unique().to_pylist():
            newest[key] = number
    wanted: dict[int, list[str]] = {}
    for key, number in newest.items():
        if key in keep:
            wanted.setdefault(number, []).append(key)
    written = 0
    with atomic_path(path) as temporary, pa.parquet.ParquetWriter(str(temporary), step_schema()) as writer:
        for number, shard in enumerate(shards):
            if number not in wanted:
                continue
            table = pa.parquet.read_table(str(shard))
            chosen = pa.array(wanted[number], pa.string())
            table = table.filter(pa.compute.is_in(table.column("id"), value_set=chosen))
            writer.write_table(table)
            written += table.num_rows
    return written

