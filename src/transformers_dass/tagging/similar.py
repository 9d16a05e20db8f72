"""Search an archive by example: `dass similar QUERY --index TABLE`.

The query file is embedded exactly as `dass tag --embeddings` embedded the archive (the same decode, features and
forward: `inference.classify.analyse_features`), with the model and precision the table was made with, and the
table's rows are ranked by cosine similarity (`index.EmbeddingIndex`).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from ..inference.classify import analyse_features
from ..inference.features import file_features
from .index import EmbeddingIndex, Match
from .run import extractor_fingerprint, model_fingerprint
from .store import RUN_FILE, parts_folder, recorded_options

__all__ = ["embed_file", "similar"]

logger = logging.getLogger(__name__)


def embed_file(path: str | os.PathLike, model, extractor) -> np.ndarray:
    """The clip embedding of one audio file, (hidden_size,) float32: the `embedding` `dass tag --embeddings` writes
    for it (decoded once, padded to the extractor's length when shorter, one forward)."""
    recording = file_features(path, extractor, show_progress=False)
    return analyse_features(model, recording, top_k=1, embeddings=True).embedding.numpy()


def similar(
    query: str | os.PathLike,
    index: str | os.PathLike | EmbeddingIndex,
    model=None,
    top_k: int = 10,
    dtype: str | None = None,
) -> list[Match]:
    """The `top_k` recordings of `index` most similar to the audio file `query`, best first.

    Args:
        query: an audio file (any format `dass tag` reads).
        index: a `dass tag --embeddings` table (or an `EmbeddingIndex` made from one).
        model: the folder or Hub id the table was tagged with; None for the bundled demo model.
        top_k: recordings returned (at most the table's).
        dtype: the precision to embed the query in (`precision.DTYPE_CHOICES`); None: the table's, as its
            `OUT.parts/run.json` records it (float32 when it recorded none or is not there).

    Raises:
        ValueError: another model or feature extractor than the table's (when its run.json is there to say), a table
            without embeddings, an unreadable query.
    """
    from ..inference.loading import load_model
    from ..inference.precision import apply_precision, resolve_dtype

    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    loaded = load_model(model, dtype=None)  # as saved: the fingerprint is taken before any precision, as `tag` does
    recorded = None if isinstance(index, EmbeddingIndex) else recorded_options(index)
    if recorded is not None:
        _check_same_model(recorded, loaded, index)
    elif not isinstance(index, EmbeddingIndex):
        logger.warning(
            "%s has no %s beside it: cannot check that it was tagged with this model; pass the same --model and "
            "--dtype as `dass tag` used", index, parts_folder(index) / RUN_FILE,
        )  # fmt: skip
    precision = resolve_dtype(dtype, "cpu")[0] if dtype is not None else (recorded or {}).get("precision")
    model = apply_precision(loaded.model, precision) if precision is not None else loaded.model
    table = index if isinstance(index, EmbeddingIndex) else EmbeddingIndex.from_table(index)
    return table.search(embed_file(query, model, loaded.extractor), top_k)


def _check_same_model(recorded: dict, loaded, index) -> None:
    """Raise unless the model and feature extractor are those `run.json` records for the table."""
    same_extractor = recorded.get("feature_extractor") == extractor_fingerprint(loaded.extractor)
    if recorded.get("model") != model_fingerprint(loaded.model) or not same_extractor:
        raise ValueError(
            f"{index} was tagged with another model or feature extractor than {loaded.name_or_path} (its "
            f"{RUN_FILE} records model {recorded.get('model')}): pass the --model it was tagged with"
        )
    if not recorded.get("embeddings"):
        raise ValueError(f"{index} was tagged without --embeddings; rerun `dass tag` with --embeddings --overwrite")
