#!/usr/bin/env python
"""How `dass listen`'s events compare with the whole-recording timeline, on held-out scenes with known events.

    python reports/demo/listen_eval.py --data /work/sed_sets/seed7_48 [--model DIR] [--dtype float32]

For each scene of an eval split (`scripts/make_demo_dataset.py --splits eval`: 10 s, 1-3 events, test voices,
babble or near-silence), the same `EventTracker` (start 0.5, end 0.3, gap 0.2 s) runs over (a) the timeline of the
whole scene in one forward (`dass timeline`'s scores), (b) `LiveDetector` on the scene alone (windows growing from
1 s, hop 1 s), (c) `LiveDetector` on all the scenes one after another as one stream (10.24 s windows that straddle
the cuts between scenes), (d) the timeline of that whole stream in one forward. For (c), the false starts are also
counted by where they fall: within 2 s after a cut, and in babble scenes. Counted per true event: found (a start of its label within 1 s of its onset), repeated
(more than one start of its label between 1 s before its onset and 0.5 s after its end); and starts that match no
true event (false).
"""

from __future__ import annotations

import argparse
import glob
import json

import numpy as np
import pyarrow.parquet as pq

from transformers_dass.audio.io import load_audio
from transformers_dass.inference.classify import analyse_features
from transformers_dass.inference.features import waveform_features
from transformers_dass.inference.loading import load_model
from transformers_dass.live import EventTracker, LiveDetector


def count(events, truth) -> np.ndarray:
    """[true events, found, repeated, false starts]."""
    starts = [e for e in events if e.kind == "start"]
    found = repeated = 0
    matched = set()
    for label, onset, offset in truth:
        found += any(e.label == label and abs(e.time_s - onset) <= 1.0 for e in starts)
        near = [k for k, e in enumerate(starts) if e.label == label and onset - 1.0 <= e.time_s <= offset + 0.5]
        repeated += max(0, len(near) - 1)
        matched |= set(near)
    return np.array([len(truth), found, repeated, len(starts) - len(matched)])


def listen(detector: LiveDetector, samples: np.ndarray, block: int = 1600) -> list:
    events = []
    for first in range(0, len(samples), block):
        events += detector.push(samples[first : first + block])
    return events + detector.finish()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="A folder with eval.jsonl and eval-*.parquet.")
    parser.add_argument("--model", default=None)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    loaded = load_model(args.model, args.dtype)
    rows = [json.loads(line) for line in open(f"{args.data}/eval.jsonl", encoding="utf-8")]
    audio = {}
    for path in sorted(glob.glob(f"{args.data}/eval-*.parquet")):
        for row in pq.read_table(path).to_pylist():
            audio[row["video_id"]] = load_audio(row["audio"]["bytes"], 16000)
    totals = {"timeline, whole scene": 0, "live, scene alone": 0, "live, scenes as one stream": 0,
              "timeline, scenes as one stream": 0}  # fmt: skip
    stream, stream_truth, offset, cuts, backgrounds = [], [], 0.0, [], []
    for row in rows:
        samples = audio[row["video_id"]]
        truth = [(e["label"], e["start_s"], e["end_s"]) for e in row["events"]]
        timeline = analyse_features(loaded.model, waveform_features(samples, loaded.extractor), top_k=1,
                                    timeline=True).timeline  # fmt: skip
        tracker = EventTracker(timeline.labels)
        totals["timeline, whole scene"] += count(tracker.update(timeline.times, timeline.scores) + tracker.close(), truth)
        totals["live, scene alone"] += count(listen(LiveDetector(loaded.model, loaded.extractor), samples), truth)
        stream.append(samples)
        cuts.append(offset)
        backgrounds.append(row["background"])
        stream_truth += [(label, offset + onset, offset + offset_s) for label, onset, offset_s in truth]
        offset += len(samples) / 16000
    stream = np.concatenate(stream)
    live_events = listen(LiveDetector(loaded.model, loaded.extractor), stream)
    totals["live, scenes as one stream"] = count(live_events, stream_truth)
    timeline = analyse_features(loaded.model, waveform_features(stream, loaded.extractor), top_k=1,
                                timeline=True).timeline  # fmt: skip
    tracker = EventTracker(timeline.labels)
    totals["timeline, scenes as one stream"] = count(tracker.update(timeline.times, timeline.scores) + tracker.close(),
                                                     stream_truth)  # fmt: skip
    print(f"{len(rows)} scenes of {args.data}, model {args.model or 'demo (bundled)'}, {loaded.reason}")
    print("| events from | true events | found (start within 1 s) | repeated | false starts |")
    print("|---|---|---|---|---|")
    for name, (events, found, repeated, false) in totals.items():
        print(f"| {name} | {events} | {found} ({100 * found / events:.0f} %) | {repeated} | {false} |")
    false = [e for e in live_events if e.kind == "start" and not any(
        e.label == label and onset - 1.0 <= e.time_s <= offset_s + 0.5 for label, onset, offset_s in stream_truth)]
    scene_of = [int(np.searchsorted(cuts, e.time_s, side="right")) - 1 for e in false]
    near_cut = sum(e.time_s - cuts[k] <= 2.0 for e, k in zip(false, scene_of))
    in_babble = sum(backgrounds[k] == "babble" for k in scene_of)
    print(f"live, scenes as one stream: of {len(false)} false starts, {near_cut} within 2 s after a cut, {in_babble} in "
          f"babble scenes ({backgrounds.count('babble')} of {len(backgrounds)} scenes)")


if __name__ == "__main__":
    main()
