"""`dass listen`'s latency and real-time factor, for the demo model and DASS-small, on this CPU.

    python -m scripts.bench.listen [--seconds 30] [--dtype auto] [--hop 1.0]

Each model listens to the example scene (a siren and a spoken digit over pink noise, 10 s) repeated to
`--seconds`, released at real time as a microphone delivers it (`live.sources.file_blocks(..., pace=True)`), through
the path of `dass listen` (`live.runner.listen_to`). Printed per model: the real-time factor (model seconds per
second of audio; below 1 keeps up), the latency from a window's newest sample arriving to its lines (p50/p95), the
latency of "start" lines from the sound's first step arriving, windows skipped. DASS-small is randomly initialised
(527 labels): its speed is that of the trained model, its events mean nothing. The CPU and the precision are printed;
compare rows of one run only.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from transformers_dass.inference.loading import load_model
from transformers_dass.live import LiveDetector
from transformers_dass.live.runner import listen_to
from transformers_dass.live.sources import file_blocks

from .machine import cpu_name
from .models import save_random_dass_small

SCENE = Path(__file__).resolve().parents[2] / "examples" / "scene_siren_three.wav"


def measure(name: str, model_path, audio_path: Path, dtype: str, hop: float) -> dict:
    loaded = load_model(model_path, dtype)
    detector = LiveDetector(loaded.model, loaded.extractor, hop_s=hop)
    # first-call costs of both input shapes (a short window padded to the training length, a full one), not timed
    detector.push(np.zeros(int((detector.window_s + hop) * detector.rate), np.float32))
    detector = LiveDetector(loaded.model, loaded.extractor, hop_s=hop)
    report = listen_to(detector, file_blocks(str(audio_path), pace=True), lambda event: None, live=True)
    stats = detector.stats
    window = np.percentile(report.window_latency_s, [50, 95])
    starts = np.percentile(report.start_latency_s, [50, 95]) if report.start_latency_s else (np.nan, np.nan)
    return {
        "model": name, "dtype": loaded.reason, "audio_s": stats.audio_s, "windows": stats.windows,
        "skipped": stats.skipped_windows, "rtf": stats.real_time_factor, "window_p50": window[0],
        "window_p95": window[1], "start_p50": starts[0], "start_p95": starts[1], "starts": len(report.start_latency_s),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="Seconds of audio per model (default 30).")
    parser.add_argument("--dtype", default="auto", help="Precision, as `dass listen --dtype` (default auto).")
    parser.add_argument("--hop", type=float, default=1.0, help="Seconds between windows (default 1).")
    args = parser.parse_args()
    scene, rate = soundfile.read(SCENE, dtype="float32")
    print(f"CPU: {cpu_name()}; {args.seconds:g} s of the example scene at real time per model, hop {args.hop:g} s")
    with tempfile.TemporaryDirectory(prefix="dass-bench-listen-") as folder:
        audio = Path(folder) / "scene.wav"
        soundfile.write(audio, np.resize(scene, int(args.seconds * rate)), rate, subtype="PCM_16")
        rows = [
            measure("demo (bundled)", None, audio, args.dtype, args.hop),
            measure(
                "DASS-small (random init)", save_random_dass_small(Path(folder) / "small"), audio, args.dtype, args.hop
            ),
        ]
    print("| model | precision | real-time factor | window latency p50 / p95 (s) | start-line latency p50 / p95 (s) "
          "| windows (skipped) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['model']} | {row['dtype']} | {row['rtf']:.3f} | {row['window_p50']:.3f} / {row['window_p95']:.3f} "
            f"| {row['start_p50']:.2f} / {row['start_p95']:.2f} ({row['starts']} starts) "
            f"| {row['windows']} ({row['skipped']}) |"
        )


if __name__ == "__main__":
    main()
