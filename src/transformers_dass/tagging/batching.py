"""Batches of clips of one length.

DASS has no attention mask inside its scans: padding a clip to batch it with a longer one changes its scores.
`LengthBuckets` therefore only ever stacks clips whose features have the same number of frames. Clips shorter
than the training length are all padded to it by the feature extractor (as `dass classify` does), so a
collection of short files batches fully; long clips batch with those of exactly their length.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator

from .features import DecodedInput

__all__ = ["LengthBuckets", "batches_of_equal_length"]


class LengthBuckets:
    """Collects decoded inputs by frame count and hands out full batches of one length.

    `add` returns the batches that are ready: a bucket that reached `batch_size`, or, when more than
    `max_pending` clips wait in all, the oldest bucket (so that a stream of distinct lengths never holds
    more than `max_pending` clips in memory). `flush` returns what is left.
    """

    def __init__(self, batch_size: int, max_pending: int | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.max_pending = max_pending if max_pending is not None else 4 * batch_size
        self._buckets: OrderedDict[int, list[DecodedInput]] = OrderedDict()
        self._pending = 0

    def add(self, item: DecodedInput) -> list[list[DecodedInput]]:
        frames = item.input_values.shape[0]
        bucket = self._buckets.setdefault(frames, [])
        bucket.append(item)
        self._pending += 1
        ready = []
        if len(bucket) == self.batch_size:
            ready.append(self._take(frames))
        while self._pending > self.max_pending:
            ready.append(self._take(next(iter(self._buckets))))
        return ready

    def flush(self) -> list[list[DecodedInput]]:
        return [self._take(frames) for frames in list(self._buckets)]

    def _take(self, frames: int) -> list[DecodedInput]:
        batch = self._buckets.pop(frames)
        self._pending -= len(batch)
        return batch


def batches_of_equal_length(items: Iterable[DecodedInput], batch_size: int) -> Iterator[list[DecodedInput]]:
    """Batches of `items` (all with features), each of one frame count, at most `batch_size` long."""
    buckets = LengthBuckets(batch_size)
    for item in items:
        yield from buckets.add(item)
    yield from buckets.flush()
