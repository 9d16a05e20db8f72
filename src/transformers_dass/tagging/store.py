"""Where a `dass tag` run keeps its results: shards as it goes, the final table at the end, and what it ran with.

For an output `OUT` (e.g. `tags.parquet`) the run writes into the folder `OUT.parts/`:

    run.json                   the options that decide the rows (model fingerprint, top-k, readout, segments...)
    rank00000-000001.parquet   shards: every `shard_size` rows of each process, written atomically
    ...

and, once every process is done, process 0 merges the shards into `OUT`, one row per input in input order. A
rerun of the same command reads the shards, skips the inputs that already have a row and tags the rest; a kill
loses at most the rows of each process's unwritten shard. A rerun with other options into the same OUT is
refused (`RunOptionsError`) unless `overwrite` clears the folder first.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from .table import atomic_path, read_rows, table_format, write_rows

__all__ = ["RunOptionsError", "RunStore", "ShardWriter", "parts_folder", "recorded_options"]

RUN_FILE = "run.json"
SHARD_NAME = re.compile(r"^rank(\d{5})-(\d{6})\.(parquet|csv|jsonl)$")


def parts_folder(output: str | os.PathLike) -> Path:
    """`OUT.parts/`: where a run writing `output` keeps its shards and `run.json`."""
    output = Path(output)
    return output.with_name(output.name + ".parts")


def recorded_options(output: str | os.PathLike) -> dict | None:
    """The options `OUT.parts/run.json` records for the run that wrote `output`; None where there is none."""
    run_file = parts_folder(output) / RUN_FILE
    return json.loads(run_file.read_text(encoding="utf-8")) if run_file.is_file() else None


class RunOptionsError(ValueError):
    """OUT holds the results of a run with other options (or a file `dass tag` did not write)."""


class RunStore:
    """The shards folder and final table of one output path."""

    def __init__(
        self, output: str | os.PathLike, with_segments: bool, with_embeddings: bool = False, steps: Path | None = None
    ):
        self.output = Path(output)
        self.steps = steps  # the per-step embeddings' file (`step_table`), if the run writes one
        self.kind = table_format(self.output)
        self.parts = parts_folder(self.output)
        self.with_segments = with_segments
        self.with_embeddings = with_embeddings

    def check(self, options: dict, overwrite: bool) -> None:
        """Raise `RunOptionsError` unless a run with `options` may write here: nothing there yet, a run with
        the same options to resume, or `overwrite`. Changes nothing on disk."""
        if overwrite:
            return
        previous = recorded_options(self.output)
        if previous is not None:
            changed = sorted(key for key in set(previous) | set(options) if previous.get(key) != options.get(key))
            if changed:
                details = "; ".join(f"{key}: {previous.get(key)!r} there, {options.get(key)!r} now" for key in changed)
                raise RunOptionsError(
                    f"{self.output} holds results of a run with other options ({details}); rerun with the same "
                    "options to resume it, choose another --output, or pass --overwrite to start again"
                )
        elif self.output.exists():
            raise RunOptionsError(
                f"{self.output} exists and was not written by `dass tag` (there is no {self.parts.name}/ beside it); "
                "choose another --output or pass --overwrite to replace it"
            )
        elif self.steps is not None and self.steps.exists():
            raise RunOptionsError(
                f"{self.steps} exists and no run in {self.parts.name}/ wrote it; choose another --step-embeddings "
                "file or pass --overwrite to replace it"
            )

    def prepare(self, options: dict, overwrite: bool) -> None:
        """Process 0, before the others start: clear everything when overwriting; record the options."""
        if overwrite:
            if self.parts.exists():
                shutil.rmtree(self.parts)
            if self.output.exists():
                self.output.unlink()
            if self.steps is not None and self.steps.exists():
                self.steps.unlink()
        self.parts.mkdir(parents=True, exist_ok=True)
        run_file = self.parts / RUN_FILE
        if not run_file.exists():
            with atomic_path(run_file) as temporary:
                temporary.write_text(json.dumps(options, indent=2, sort_keys=True), encoding="utf-8")

    def shard_paths(self) -> list[Path]:
        """The table's shards written so far, oldest first (by modification time, then name)."""
        return shards_oldest_first(self.parts, SHARD_NAME)

    def rows(self) -> dict[str, dict]:
        """Every row in the shards by id; where an id has rows in several shards (a failed input tried again),
        the newest wins."""
        found: dict[str, dict] = {}
        for path in self.shard_paths():
            for row in read_rows(path, SHARD_NAME.match(path.name).group(3)):
                found[row["id"]] = row
        return found

    def writer(self, rank: int, shard_size: int, before_write=None) -> ShardWriter:
        return ShardWriter(self, rank, shard_size, before_write)

    def merge(self, ids: list[str]) -> list[dict]:
        """Write OUT: the row of every id in `ids`, in that order. Raises if one has no row (a process failed)."""
        found = self.rows()
        missing = [key for key in ids if key not in found]
        if missing:
            raise RuntimeError(
                f"{len(missing)} input(s) have no row in {self.parts} (e.g. {missing[0]}): a process stopped before "
                "writing them; rerun the same command to tag them"
            )
        table = [found[key] for key in ids]
        write_rows(self.output, table, self.with_segments, self.kind, self.with_embeddings)
        return table


def shards_oldest_first(parts: Path, name: re.Pattern) -> list[Path]:
    """The files in `parts` whose names match `name`, oldest first (by modification time, then name)."""
    if not parts.is_dir():
        return []
    shards = [path for path in parts.iterdir() if name.match(path.name)]
    return sorted(shards, key=lambda path: (path.stat().st_mtime_ns, path.name))


def next_shard_number(parts: Path, name: re.Pattern, rank: int) -> int:
    """The number of process `rank`'s next shard in `parts`: one past its highest so far (a resumed run adds to
    them). `name` captures the rank and the number as its first two groups."""
    matches = (name.match(path.name) for path in shards_oldest_first(parts, name))
    return max((int(match.group(2)) for match in matches if int(match.group(1)) == rank), default=0) + 1


class ShardWriter:
    """Buffers one process's rows and writes them as numbered shards of `shard_size` rows; `before_write` (if given)
    is called before each shard is written (the per-step embeddings of those rows go to disk first)."""

    def __init__(self, store: RunStore, rank: int, shard_size: int, before_write=None):
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.store = store
        self.rank = rank
        self.shard_size = shard_size
        self.before_write = before_write
        self._next = next_shard_number(store.parts, SHARD_NAME, rank)
        self._buffer: list[dict] = []

    def add(self, rows: list[dict]) -> None:
        self._buffer += rows
        while len(self._buffer) >= self.shard_size:
            self._write(self._buffer[: self.shard_size])
            self._buffer = self._buffer[self.shard_size :]

    def close(self) -> None:
        if self._buffer:
            self._write(self._buffer)
            self._buffer = []

    def _write(self, rows: list[dict]) -> None:
        if self.before_write is not None:
            self.before_write()
        name = f"rank{self.rank:05d}-{self._next:06d}.{self.store.kind}"
        write_rows(self.store.parts / name, rows, self.store.with_segments, self.store.kind, self.store.with_embeddings)
        self._next += 1
