"""`dass listen`: sound events as they happen, from a microphone, a pipe of raw samples, a file or a URL.

- `events`: start/end events from per-step scores, with hysteresis (`EventTracker`, `LiveEvent`);
- `detector`: overlapping windows through the timeline path, each step decided once (`LiveDetector`);
- `sources`: stdin PCM, files and URLs (paced at real time or not), a microphone (`sounddevice`, the `[live]`
  extra);
- `runner`: the reading thread, skipping when behind, latency (`listen_to`).

The `dass demo` page's live tab pushes the browser's microphone through the same `LiveDetector`.
"""

from __future__ import annotations

from .detector import DEFAULT_HOP_S, LiveDetector
from .events import EventTracker, LiveEvent

__all__ = ["DEFAULT_HOP_S", "EventTracker", "LiveDetector", "LiveEvent"]
