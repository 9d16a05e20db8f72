"""Throughput of `dass tag` against `dass classify` file by file, measured in the same run.

    python scripts/benchmark_tagging.py [--short-files 1000] [--long-files 20] [--small-short-files 250]
        [--small-long-files N] [--baseline-files 100] [--models demo small]

Writes synthetic archives into a temporary folder: short files (1 to 5 s, 16 kHz, tones in noise; each padded to
10.24 s by the model's features, as `dass classify` does) and one-minute files. For each model (the bundled demo
model; DASS-small with random weights from its config: the speed of the architecture, not of trained weights):

- baseline: `dass classify`'s per-file function in a loop in this process (model loaded once, one file at a time,
  no batching, no workers), over the first `--baseline-files` files of the set (its rate per file is steady);
- `dass tag` with 1 process (default workers: cores - 1) and with 2 processes (`torchrun --nproc_per_node 2`), run
  as a user runs them; files/s and audio h/s from the time the command itself reports (its tagging, from the
  first input read to the table written, without the interpreter and model start-up, which is printed apart).

Prints the CPU model, torch version and a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

from bench.machine import cpu_name  # scripts/bench: the helpers every benchmark script shares
from bench.models import save_random_dass_small

SUMMARY = re.compile(r"This run tagged (\d+) files \([\d.]+ h\) in ([\d.]+) s")


def write_archive(folder: Path, count: int, seconds: tuple[float, float], seed: int) -> float:
    """`count` files of uniform random length in `seconds`; returns their total seconds."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    total = 0.0
    for index in range(count):
        length = int(rng.uniform(*seconds) * 16000)
        t = np.arange(length) / 16000
        audio = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t) + 0.05 * rng.standard_normal(length)
        soundfile.write(folder / f"{index:05d}.wav", audio.astype(np.float32), 16000, subtype="PCM_16")
        total += length / 16000
    return total


def baseline(model_dir: str, files: list[Path]) -> float:
    """Seconds `dass classify` takes over `files`, one by one in this process (model already loaded)."""
    from transformers_dass.cli import _classify_file
    from transformers_dass.inference.loading import load_model_and_extractor

    model, extractor = load_model_and_extractor(model_dir)
    start = time.perf_counter()
    for path in files:
        entry = _classify_file(model, extractor, str(path), 5, "auto")
        assert "error" not in entry, entry
    return time.perf_counter() - start


def tag_run(model_dir: str, folder: Path, output: Path, processes: int) -> tuple[float, float, int]:
    """(tagging seconds reported by the command, wall seconds of the command, files tagged)."""
    command = ["-m", "transformers_dass", "tag", str(folder), "--output", str(output), "--model", model_dir]
    command += ["--overwrite", "--no-progress"]
    if processes == 1:
        command = [sys.executable] + command
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] + command
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    start = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    match = SUMMARY.search(run.stdout)
    if run.returncode != 0 or match is None:
        raise RuntimeError(f"`{' '.join(command)}` failed ({run.returncode}):\n{run.stdout}\n{run.stderr[-3000:]}")
    return float(match.group(2)), wall, int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--short-files", type=int, default=1000)
    parser.add_argument("--long-files", type=int, default=20)
    parser.add_argument(
        "--small-short-files", type=int, default=250,
        help="Short files for DASS-small (default 250: its files/s is steady by then, and the whole benchmark stays "
        "near 10 min on 2 cores; give 1000 for the full set).",
    )
    parser.add_argument("--small-long-files", type=int, help="One-minute files for DASS-small (default: --long-files).")
    parser.add_argument("--baseline-files", type=int, default=100, help="Files of each set the baseline runs over.")
    parser.add_argument("--models", nargs="+", default=["demo", "small"], choices=["demo", "small"])
    args = parser.parse_args()

    from transformers_dass.inference.loading import demo_model_path

    print(f"CPU: {cpu_name()} ({os.cpu_count()} cores), torch {torch.__version__}, {torch.get_num_threads()} threads")
    started = time.perf_counter()
    lines = [
        "| model | files | audio h | baseline: classify file by file | tag, 1 process | tag, 2 processes (torchrun) "
        "| speed-up 1 proc / 2 procs | start-up s (1 / 2 procs) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        models = {"demo": demo_model_path()}
        if "small" in args.models:
            models["small"] = str(save_random_dass_small(root / "dass-small"))
        for name in args.models:
            counts = {
                "short": args.short_files if name == "demo" or args.small_short_files is None else args.small_short_files,
                "long": args.long_files if name == "demo" or args.small_long_files is None else args.small_long_files,
            }
            for kind, count in counts.items():
                if count == 0:
                    continue
                folder = root / f"{name}-{kind}"
                seconds = write_archive(folder, count, (1.0, 5.0) if kind == "short" else (60.0, 60.0), seed=len(lines))
                files = sorted(folder.iterdir())
                base_files = files[: args.baseline_files]
                base_seconds = baseline(models[name], base_files)
                base_rate = len(base_files) / base_seconds
                cells = [f"{base_rate:.2f} files/s ({len(base_files)} files)"]
                rates = []
                startups = []
                for processes in (1, 2):
                    tagging, wall, tagged = tag_run(models[name], folder, root / f"{name}-{kind}-{processes}.parquet", processes)
                    assert tagged == count, (tagged, count)
                    rates.append(count / tagging)
                    startups.append(wall - tagging)
                    cells.append(f"{count / tagging:.2f} files/s, {seconds / 3600 / tagging:.4f} audio h/s")
                line = (
                    f"| {'demo' if name == 'demo' else 'DASS-small (random weights)'} | {count} x {kind} | {seconds / 3600:.2f} | "
                    f"{cells[0]} | {cells[1]} | {cells[2]} | {rates[0] / base_rate:.2f}x / {rates[1] / base_rate:.2f}x | "
                    f"{startups[0]:.0f} / {startups[1]:.0f} |"
                )
                lines.append(line)
                print(line, flush=True)
    print()
    print("\n".join(lines))
    print(f"\nwhole benchmark: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
