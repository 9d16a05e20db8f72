"""Resampling to 16 kHz: soxr (one-shot `soxr.resample` and block-wise `soxr.ResampleStream`) against the package's
windowed-sinc resampler (`transformers_dass.audio.sinc`: `resample`, `BlockResampler`), accuracy and speed in one run.

From the repository root:

    python -m scripts.bench.resample                  # 8, 22.05, 44.1, 48 and 96 kHz -> 16 kHz
    python -m scripts.bench.resample --seconds 30 --repeats 3

Per input rate, both resamplers, on float32 input, measured against float64 references:
- passband: tones at 100 Hz, 1 kHz and 50, 75 and 87.5 % of the lower Nyquist frequency (4 kHz for 8 kHz input,
  else 8 kHz: up to 7 kHz; amplitude 0.15 each) whose exact 16 kHz samples are known (the analytic tones): the
  error's RMS relative to the signal's (dB, lower is better) and its largest sample;
- stopband: a 0.5-amplitude tone at 9.5 kHz (above the new 8 kHz Nyquist, below the input's; not at 8 kHz input):
  what is left of it, aliased into 0-8 kHz, relative to the tone (dB, lower is better);
- scipy: noise band-limited to 75 % of the lower Nyquist frequency (where every filter passes it whole) against
  scipy.signal.resample_poly of the same float64 input, error RMS relative to the signal (dB): a float64 reference
  of another design (its own Kaiser-window filter), so a cross-check of the passband on a broadband signal;
- block-wise: the output fed in blocks of random size (1 sample to 1.5 s) against the one-shot output, largest
  |difference| and whether the lengths agree;
- speed: median wall time over --repeats of one-shot and of block-wise (1 s blocks) resampling of --seconds of mono
  audio, in ms, and soxr's speed-up (ours / soxr), measured in the same process, one thread.
Edges (the first and last 0.1 s) are left out of the accuracy numbers: both filters see zeros there.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import numpy as np

from .machine import cpu_name

RATES = (8000, 22050, 44100, 48000, 96000)
TARGET = 16000
PASS_FRACTIONS = (0.5, 0.75, 0.875)  # of the lower Nyquist frequency, beside 100 Hz and 1 kHz
STOP_TONE = 9500.0
EDGE_S = 0.1


def tones(frequencies, rate: int, seconds: float, amplitude: float) -> np.ndarray:
    """float64 sum of sines (phase 0.3 rad, so that no sample is trivially zero) sampled at `rate`."""
    t = np.arange(round(rate * seconds)) / rate
    return sum(amplitude * np.sin(2 * np.pi * f * t + 0.3) for f in frequencies)


def db(ratio: float) -> float:
    return 20 * math.log10(max(ratio, 1e-300))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def resamplers():
    """name -> (one-shot function (x, orig) -> y, block-wise factory orig -> (push, finish))."""
    import soxr

    from transformers_dass.audio import sinc

    def soxr_blocks(orig):
        stream = soxr.ResampleStream(orig, TARGET, 1, dtype="float32", quality="HQ")
        return (lambda block: stream.resample_chunk(block)), (lambda: stream.resample_chunk(np.zeros(0, np.float32), last=True))

    def sinc_blocks(orig):
        resampler = sinc.BlockResampler(orig, TARGET)
        return resampler.push, resampler.finish

    return {
        "sinc (ours)": (lambda x, orig: sinc.resample(x, orig, TARGET), sinc_blocks),
        "soxr HQ": (lambda x, orig: soxr.resample(x, orig, TARGET, quality="HQ"), soxr_blocks),
    }


def middle(y: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    edge = int(EDGE_S * TARGET)
    n = min(len(y), len(reference))
    return y[edge : n - edge].astype(np.float64), reference[edge : n - edge]


def accuracy(one_shot, orig: int, seconds: float) -> dict:
    out = {}
    nyquist = min(orig, TARGET) / 2
    frequencies = (100.0, 1000.0) + tuple(f * nyquist for f in PASS_FRACTIONS)
    x = tones(frequencies, orig, seconds, 0.15)
    expected = tones(frequencies, TARGET, len(x) / orig, 0.15)
    y, ref = middle(one_shot(x.astype(np.float32), orig), expected)
    out["length"] = len(one_shot(x.astype(np.float32), orig))
    out["expected_length"] = math.ceil(len(x) * TARGET / orig)
    out["pass_db"] = db(rms(y - ref) / rms(ref))
    out["pass_max"] = float(np.abs(y - ref).max())
    if orig / 2 > STOP_TONE:
        x = tones([STOP_TONE], orig, seconds, 0.5)
        y, _ = middle(one_shot(x.astype(np.float32), orig), np.zeros(len(x)))
        out["stop_db"] = db(rms(y) / rms(x))
    else:
        out["stop_db"] = None
    from scipy.signal import resample_poly

    spectrum = np.fft.rfft(np.random.default_rng(orig).standard_normal(len(x)) * 0.1)
    spectrum[np.fft.rfftfreq(len(x), 1 / orig) > 0.75 * nyquist] = 0
    noise = np.fft.irfft(spectrum, len(x))
    g = math.gcd(orig, TARGET)
    reference = resample_poly(noise, TARGET // g, orig // g)
    y, ref = middle(one_shot(noise.astype(np.float32), orig), reference)
    out["scipy_db"] = db(rms(y - ref) / rms(ref))
    return out


def blockwise(one_shot, factory, orig: int, seconds: float) -> tuple[float, bool]:
    rng = np.random.default_rng(orig + 1)
    x = (rng.standard_normal(round(orig * seconds)) * 0.1).astype(np.float32)
    whole = one_shot(x, orig)
    push, finish = factory(orig)
    pieces, position = [], 0
    while position < len(x):
        size = int(rng.integers(1, int(1.5 * orig)))
        pieces.append(push(x[position : position + size]))
        position += size
    pieces.append(finish())
    streamed = np.concatenate(pieces)
    n = min(len(streamed), len(whole))
    return float(np.abs(streamed[:n] - whole[:n]).max()), len(streamed) == len(whole)


def timed(call, repeats: int) -> float:
    times = []
    for _ in range(repeats + 1):  # the first call warms caches and builds filters
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) * 1000


def speed(one_shot, factory, orig: int, seconds: float, repeats: int) -> tuple[float, float]:
    x = (np.random.default_rng(orig + 2).standard_normal(round(orig * seconds)) * 0.1).astype(np.float32)

    def blocks():
        push, finish = factory(orig)
        for start in range(0, len(x), orig):
            push(x[start : start + orig])
        finish()

    return timed(lambda: one_shot(x, orig), repeats), timed(blocks, repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="audio per speed measurement (default 60)")
    parser.add_argument("--accuracy-seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rates", type=int, nargs="+", default=list(RATES))
    args = parser.parse_args(argv)

    import soxr
    import torch

    torch.set_num_threads(1)
    print(f"command: python -m scripts.bench.resample {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    print(f"CPU: {cpu_name()} ({os.cpu_count()} logical CPUs); load average {os.getloadavg()[0]:.2f}")
    print(f"soxr {soxr.__version__}, torch {torch.__version__}, numpy {np.__version__}; one thread\n")
    header = (
        "| input rate | resampler | passband error (dB) | largest error | stopband 9.5 kHz (dB) | vs scipy (dB) "
        "| blocks vs one-shot (max abs) | length | one-shot (ms) | block-wise (ms) |"
    )
    print(header)
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
    ratios = []
    for orig in args.rates:
        row_times = {}
        for name, (one_shot, factory) in resamplers().items():
            acc = accuracy(one_shot, orig, args.accuracy_seconds)
            block_error, same_length = blockwise(one_shot, factory, orig, args.accuracy_seconds)
            one, blocks = speed(one_shot, factory, orig, args.seconds, args.repeats)
            row_times[name] = (one, blocks)
            stop = f"{acc['stop_db']:.1f}" if acc["stop_db"] is not None else "-"
            length = "ceil" if acc["length"] == acc["expected_length"] else f"{acc['length'] - acc['expected_length']:+d}"
            print(
                f"| {orig} | {name} | {acc['pass_db']:.1f} | {acc['pass_max']:.1e} | {stop} | {acc['scipy_db']:.1f} "
                f"| {block_error:.1e}{'' if same_length else ' (lengths differ)'} | {length} | {one:.1f} | {blocks:.1f} |"
            )
        (ours_one, ours_blocks), (soxr_one, soxr_blocks) = row_times["sinc (ours)"], row_times["soxr HQ"]
        ratios.append((orig, ours_one / soxr_one, ours_blocks / soxr_blocks))
    print(f"\nspeed-up of soxr over ours ({args.seconds:g} s of audio, median of {args.repeats}):")
    for orig, one, blocks in ratios:
        print(f"- {orig} Hz: one-shot {one:.1f}x, block-wise {blocks:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
