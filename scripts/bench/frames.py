"""What the frame model's finer step costs: DASS forward with 0.32 s frame scores against the 40 ms steps of
`DassForAudioFrameClassification` (the same forward plus `readout.upsample_frame_logits`), and against a frame model
with frame skips on stages 1 and 2 (`config.frame_skip_stages`: their frequency means, two small heads, two more
interpolations), in one run.

From the repository root:

    OMP_WAIT_POLICY=PASSIVE python -m scripts.bench.frames                 # 10 s and 600 s, DASS-small
    python -m scripts.bench.frames --seconds 10 --repeats 5

Per length, the three models (same backbone weights, same input, every setting "auto": the lean path from
config.lean_threshold_frames frames) are timed in interleaved rounds (`timing.timed_rounds`), so that the machine's
load hits them alike, and the upsampling alone is timed on the forward's own frame logits. Prints the machine, then
one row per length: wall and process CPU time of each forward, their ratios to the plain forward, the upsampling's
share, and the size of the outputs. Random weights and inputs (speed does not depend on them).
"""

from __future__ import annotations

import argparse

import torch

from transformers_dass import DassConfig, DassForAudioClassification, DassForAudioFrameClassification
from transformers_dass.audio.fbank import num_frames
from transformers_dass.model.readout import upsample_frame_logits
from transformers_dass.model.steps import num_steps

from .machine import machine_lines
from .timing import timed_rounds, timed_runs


def frames_of(seconds: float) -> int:
    """Input frames of `seconds` of 16 kHz audio (10 s padded to 1024, as the feature extractor does)."""
    return max(num_frames(int(seconds * 16000)), 1024 if seconds <= 10.24 else 0)


def measure(seconds: float, repeats: int, labels: int) -> dict:
    config = DassConfig.small(num_labels=labels)
    torch.manual_seed(0)
    clip_model = DassForAudioClassification(config).eval()
    frame_model = DassForAudioFrameClassification(config).eval()
    frame_model.load_state_dict(clip_model.state_dict())
    skip_config = DassConfig.small(num_labels=labels, frame_skip_stages=[1, 2])
    skip_model = DassForAudioFrameClassification(skip_config).eval()
    skip_model.load_state_dict(clip_model.state_dict(), strict=False)  # the skips keep their (zero) initial weights
    frames = frames_of(seconds)
    inputs = torch.randn(1, frames, config.num_mel_bins)
    short = inputs[:, :1024]
    with torch.inference_mode():
        coarse = lambda: clip_model(inputs, return_frame_logits=True).frame_logits  # noqa: E731
        fine = lambda: frame_model(inputs).logits  # noqa: E731
        skips = lambda: skip_model(inputs).logits  # noqa: E731
        warmups = [
            lambda: clip_model(short, return_frame_logits=True),
            lambda: frame_model(short),
            lambda: skip_model(short),
        ]
        coarse_time, fine_time, skip_time = timed_rounds(
            [coarse, fine, skips], repeats, warmups=warmups if frames > 1024 else None
        )
        logits = coarse_time["output"]
        steps = num_steps(frames, config.fine_step_frames)
        upsample = timed_runs(lambda: upsample_frame_logits(logits, config.frame_upsampling, steps), max(repeats, 5))
    return {
        "seconds": seconds,
        "frames": frames,
        "coarse": coarse_time,
        "fine": fine_time,
        "skips": skip_time,
        "upsample": upsample,
        "coarse_shape": tuple(logits.shape),
        "fine_shape": tuple(fine_time["output"].shape),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 600.0])
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per length (after one warm-up round)")
    parser.add_argument("--labels", type=int, default=527)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("\n".join(machine_lines([args.threads])))
    print("model: DASS-small (DassConfig.small(), random weights), batch 1, float32, inference_mode 'auto'\n")
    print("| audio | frames | 0.32 s steps: wall / CPU s | 40 ms steps: wall / CPU s | ratio (wall) | with skips 1, 2: "
          "wall / CPU s | ratio (wall / CPU) | upsampling alone ms | share of the forward | outputs |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for seconds in args.seconds:
        row = measure(seconds, args.repeats, args.labels)
        coarse, fine, skips, upsample = row["coarse"], row["fine"], row["skips"], row["upsample"]
        print(
            f"| {seconds:g} s | {row['frames']} | {coarse['wall']:.3f} / {coarse['cpu']:.3f} | {fine['wall']:.3f} / "
            f"{fine['cpu']:.3f} | {fine['wall'] / coarse['wall']:.3f} | {skips['wall']:.3f} / {skips['cpu']:.3f} | "
            f"{skips['wall'] / coarse['wall']:.3f} / {skips['cpu'] / coarse['cpu']:.3f} | {upsample['wall'] * 1e3:.2f} | "
            f"{upsample['wall'] / coarse['wall']:.2%} | {row['coarse_shape']} -> {row['fine_shape']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
