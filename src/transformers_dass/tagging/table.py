"""The table `dass tag` writes: one row per input, as Parquet, CSV or JSONL (chosen by the file's extension).

Columns:
    id            str     the input's key (the path as given, or `split/row` / the id column of a dataset)
    path          str     the file read (for a dataset row, the audio's original path, if it has one)
    duration_s    float   seconds of audio read
    sample_rate   int     the file's own rate in Hz (the audio is resampled to the model's)
    labels        [str]   the top-k labels, best first
    scores        [float] their scores (`dass classify`'s: sigmoid, softmax or the logits of a regression)
    clip_pooling  str     the readout used (mean or max)
    error         str     why the input could not be tagged (then labels, scores are null); null otherwise
    segments      [{start_s, end_s, label, score}]   only with `--segments`: `dass timeline`'s segments
    embedding     [float32]  only with `--embeddings`: the clip embedding (hidden_size values; `DassModel`'s
                  `pooler_output`, the classifier's input); null in a row with an error

Parquet keeps the lists as lists (`datasets.load_dataset("parquet", data_files=...)`, `pandas.read_parquet`);
JSONL as JSON arrays; CSV holds `labels`, `scores`, `segments` and `embedding` as JSON text in their cells. Parquet needs
pyarrow (`pip install "transformers-dass[tag]"`), imported only when asked for.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
from pathlib import Path

from ..inference.timeline import SEGMENT_FIELDS
from ..utils.optional import install_hint, require

__all__ = ["COLUMNS", "PARQUET_HINT", "read_rows", "table_format", "write_rows"]

COLUMNS = ("id", "path", "duration_s", "sample_rate", "labels", "scores", "clip_pooling", "error")
SEGMENTS_COLUMN = "segments"
EMBEDDING_COLUMN = "embedding"
JSON_IN_CSV = ("labels", "scores", "segments", "embedding")
PARQUET_HINT = install_hint("tag")
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def table_format(path: str | os.PathLike) -> str:
    """"csv" or "jsonl" by the extension of `path`; "parquet" for anything else (the default)."""
    return FORMATS.get(Path(path).suffix.lower(), "parquet")


def columns(with_segments: bool, with_embeddings: bool = False) -> tuple[str, ...]:
    return COLUMNS + ((SEGMENTS_COLUMN,) if with_segments else ()) + ((EMBEDDING_COLUMN,) if with_embeddings else ())


def write_rows(
    path: str | os.PathLike, rows: list[dict], with_segments: bool, kind: str | None = None, with_embeddings: bool = False
) -> None:
    """Write `rows` (dicts with `columns(with_segments, with_embeddings)`) to `path` in `kind` (default: by
    its extension), atomically (`atomic_path`), so that a kill never leaves a half-written table."""
    kind = kind or table_format(path)
    with atomic_path(path) as temporary:
        if kind == "parquet":
            _write_parquet(temporary, rows, with_segments, with_embeddings)
        elif kind == "csv":
            _write_csv(temporary, rows, columns(with_segments, with_embeddings))
        else:
            _write_jsonl(temporary, rows, columns(with_segments, with_embeddings))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """A temporary name beside `path` to write the file to: renamed over `path` when the block completes, removed if
    it raises, so that a kill or an error never leaves a half-written file at `path`."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def read_rows(path: str | os.PathLike, kind: str | None = None) -> list[dict]:
    """The rows of a table written by `write_rows`, as dicts with Python values."""
    kind = kind or table_format(path)
    if kind == "parquet":
        return require_pyarrow().parquet.read_table(str(path)).to_pylist()
    if kind == "csv":
        with open(path, newline="", encoding="utf-8") as handle:
            return [_from_csv(row) for row in csv.DictReader(handle)]
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def require_pyarrow():
    """The `pyarrow` module (with `pyarrow.parquet` loaded), or an ImportError naming the extra."""
    require("pyarrow.parquet", "tag", "Parquet output", "or write .csv / .jsonl, which need nothing")
    return require("pyarrow", "tag", "Parquet output")


def parquet_schema(with_segments: bool, with_embeddings: bool = False):
    pa = require_pyarrow()
    fields = [
        pa.field("id", pa.string()),
        pa.field("path", pa.string()),
        pa.field("duration_s", pa.float64()),
        pa.field("sample_rate", pa.int64()),
        pa.field("labels", pa.list_(pa.string())),
        pa.field("scores", pa.list_(pa.float64())),
        pa.field("clip_pooling", pa.string()),
        pa.field("error", pa.string()),
    ]
    if with_segments:
        segment = pa.struct(
            [(name, pa.string() if name == "label" else pa.float64()) for name in SEGMENT_FIELDS]
        )
        fields.append(pa.field(SEGMENTS_COLUMN, pa.list_(segment)))
    if with_embeddings:
        fields.append(pa.field(EMBEDDING_COLUMN, pa.list_(pa.float32())))  # the model's own float32, no rounding
    return pa.schema(fields)


def _write_parquet(path: Path, rows: list[dict], with_segments: bool, with_embeddings: bool) -> None:
    pa = require_pyarrow()
    table = pa.Table.from_pylist(rows, schema=parquet_schema(with_segments, with_embeddings))
    pa.parquet.write_table(table, str(path))


def _write_csv(path: Path, rows: list[dict], names: tuple[str, ...]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        for row in rows:
            writer.writerow({name: _to_csv(name, row.get(name)) for name in names})


def _to_csv(name: str, value):
    if value is None:
        return ""
    if name in JSON_IN_CSV:
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)  # every digit, so that a CSV row reads back to the same float
    return value


def _from_csv(row: dict) -> dict:
    out = {}
    for name, text in row.items():
        if text == "":
            out[name] = None
        elif name in JSON_IN_CSV:
            out[name] = json.loads(text)
        elif name == "duration_s":
            out[name] = float(text)
        elif name == "sample_rate":
            out[name] = int(text)
        else:
            out[name] = text
    return out


def _write_jsonl(path: Path, rows: list[dict], names: tuple[str, ...]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps({name: _json_value(row.get(name)) for name in names}) + "\n")


def _json_value(value):
    """JSON has no NaN: a non-finite float is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
