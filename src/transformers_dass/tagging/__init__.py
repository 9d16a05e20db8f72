"""Tagging a whole audio archive: `dass tag` and `tag()` (see docs/tagging.md).

Modules, one job each: `inputs` (files, folders, manifests, datasets -> a fixed list of inputs), `features`
(decode + resample + features in DataLoader workers), `batching` (only clips of one length per batch),
`predict` (the model step: `dass classify`'s scores and `dass timeline`'s segments), `table` (Parquet/CSV/JSONL),
`store` (shards, resume, refusal of other options), `distributed` (torchrun / accelerate launch), `run` (`tag`);
`index` (a table's embeddings, exact cosine search) and `similar` (`dass similar`: search by an audio file).
"""

from .index import EmbeddingIndex, Match
from .inputs import InputList, TagInput, discover_inputs
from .run import TagSummary, model_fingerprint, tag
from .similar import embed_file, similar
from .store import RunOptionsError
from .table import COLUMNS, read_rows

__all__ = [
    "COLUMNS",
    "EmbeddingIndex",
    "InputList",
    "Match",
    "RunOptionsError",
    "TagInput",
    "TagSummary",
    "discover_inputs",
    "embed_file",
    "model_fingerprint",
    "read_rows",
    "similar",
    "tag",
]
