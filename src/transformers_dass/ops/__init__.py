"""Cross selective scan: the reference PyTorch code and the dispatch to compiled backends."""

from .dispatch import (
    SCAN_BACKENDS,
    available_backends,
    cross_selective_scan,
    resolve_backend,
)
from .inplace import cross_scan_channels_last, cross_selective_scan_inplace
from .reference import (
    NUM_DIRECTIONS,
    cross_merge,
    cross_scan,
    cross_selective_scan_reference,
    selective_scan_reference,
)

__all__ = [
    "NUM_DIRECTIONS",
    "SCAN_BACKENDS",
    "available_backends",
    "cross_merge",
    "cross_scan",
    "cross_scan_channels_last",
    "cross_selective_scan_inplace",
    "cross_selective_scan",
    "cross_selective_scan_reference",
    "resolve_backend",
    "selective_scan_reference",
]
