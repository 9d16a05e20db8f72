"""An archive's clip embeddings as a search index: the `embedding` column of a `dass tag --embeddings` table.

Exact cosine similarity in numpy: the rows are scaled to unit length once, a query costs one matrix-vector product
(N x D multiply-adds, reading the whole matrix once) and a partial sort. At D = 768 (dass-small) the index takes
3 GB of memory per million rows; past what fits in memory, or where many queries a second must be answered, an
approximate index takes over (FAISS: `IndexFlatIP` on the same unit vectors is this search, `IndexHNSWFlat` or
`IndexIVFPQ` the approximate ones), not provided here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .table import EMBEDDING_COLUMN, read_rows, require_pyarrow, table_format

__all__ = ["EmbeddingIndex", "Match", "cosine_top_k"]


@dataclass(frozen=True)
class Match:
    """One recording found: its `id` and `path` in the table and its cosine similarity to the query, in [-1, 1]."""

    id: str
    path: str | None
    score: float


def cosine_top_k(query: np.ndarray, unit_rows: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `top_k` rows most similar to `query`: (row indices, cosine similarities), best first.

    Args:
        query: (D,) any non-zero vector.
        unit_rows: (N, D) rows of unit length (or zero: similarity 0).
        top_k: at most N rows are returned.
    """
    norm = float(np.linalg.norm(query))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("the query's embedding is zero or not finite: it has no direction to compare")
    scores = unit_rows @ (np.asarray(query, dtype=np.float64) / norm).astype(unit_rows.dtype)
    k = min(top_k, scores.shape[0])
    best = np.argpartition(-scores, k - 1)[:k] if k < scores.shape[0] else np.arange(scores.shape[0])
    best = best[np.argsort(-scores[best], kind="stable")]
    return best, scores[best]


class EmbeddingIndex:
    """The embeddings of a table's rows (those without an error), scaled to unit length.

    Attributes:
        ids, paths: each row's `id` and `path`, in table order.
        vectors: (N, D) float32 unit rows.
    """

    def __init__(self, ids: list[str], paths: list[str | None], vectors: np.ndarray):
        if vectors.ndim != 2 or len(ids) != vectors.shape[0] or len(paths) != len(ids):
            counts = f"{len(ids)}, {len(paths)}, {vectors.shape}"
            raise ValueError(f"an index needs one id, path and vector per row; got {counts}")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.ids = ids
        self.paths = paths
        self.vectors = (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)

    @property
    def dimension(self) -> int:
        return self.vectors.shape[1]

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_table(cls, path: str | os.PathLike) -> EmbeddingIndex:
        """The rows of a `dass tag --embeddings` table (Parquet, CSV or JSONL) that have an embedding.

        Raises:
            FileNotFoundError: no such table.
            ValueError: the table has no `embedding` column, no row with one, or rows of different lengths.
        """
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"no index table {path}: make one with `dass tag INPUT... --output {path} --embeddings`"
            )
        ids, paths, vectors = _read_parquet(path) if table_format(path) == "parquet" else _read_text(path)
        if not ids:
            raise ValueError(f"{path} has no row with an embedding (every input failed?)")
        return cls(ids, paths, vectors)

    def search(self, query: np.ndarray, top_k: int = 10) -> list[Match]:
        """The `top_k` rows most similar to `query` (D,), best first."""
        query = np.asarray(query, dtype=np.float32)
        if query.shape != (self.dimension,):
            raise ValueError(
                f"the query's embedding has shape {query.shape} but the index holds vectors of {self.dimension}: "
                "embed the query with the model that made the index (--model)"
            )
        rows, scores = cosine_top_k(query, self.vectors, top_k)
        return [Match(self.ids[r], self.paths[r], float(s)) for r, s in zip(rows.tolist(), scores.tolist())]


def _no_column(path) -> ValueError:
    return ValueError(
        f"{path} has no `{EMBEDDING_COLUMN}` column: it was tagged without embeddings; rerun `dass tag` on the same "
        f"inputs with `--output {path} --embeddings --overwrite` (or into another --output)"
    )


def _read_parquet(path) -> tuple[list[str], list[str | None], np.ndarray]:
    """Only the id, path and embedding columns, the vectors straight from Arrow's buffers (no Python floats)."""
    pa = require_pyarrow()
    import pyarrow.compute as pc

    names = pa.parquet.read_schema(str(path)).names
    if EMBEDDING_COLUMN not in names:
        raise _no_column(path)
    table = pa.parquet.read_table(str(path), columns=["id", "path", EMBEDDING_COLUMN])
    table = table.filter(pc.is_valid(table[EMBEDDING_COLUMN]))
    column = table[EMBEDDING_COLUMN].combine_chunks()
    lengths = set(pc.list_value_length(column).to_pylist())
    if len(lengths) > 1:
        raise ValueError(f"{path} holds embeddings of different lengths {sorted(lengths)}: one table, one model")
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    vectors = values.reshape(len(table), lengths.pop() if lengths else 0)
    return table["id"].to_pylist(), table["path"].to_pylist(), vectors


def _read_text(path) -> tuple[list[str], list[str | None], np.ndarray]:
    rows = read_rows(path)
    if rows and EMBEDDING_COLUMN not in rows[0]:
        raise _no_column(path)
    rows = [row for row in rows if row.get(EMBEDDING_COLUMN) is not None]
    lengths = {len(row[EMBEDDING_COLUMN]) for row in rows}
    if len(lengths) > 1:
        raise ValueError(f"{path} holds embeddings of different lengths {sorted(lengths)}: one table, one model")
    vectors = np.asarray([row[EMBEDDING_COLUMN] for row in rows], dtype=np.float32).reshape(len(rows), -1)
    return [row["id"] for row in rows], [row["path"] for row in rows], vectors
