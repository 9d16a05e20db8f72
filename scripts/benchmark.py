"""Latency, throughput and peak memory of DASS against transformers' AST, measured in one run on this machine.

    python scripts/benchmark.py [--threads 2] [--frames 1024 6000 60000] [--batch 1 8]
                                [--backends reference cpu] [--models small medium] [--ast-max-frames 1024]
    python scripts/benchmark.py --lengths-seconds 10 600 3600 9000 [--path auto|lean|standard]
                                [--models small] [--backends cpu]

Every (model, scan backend, frames, batch) case runs in its own subprocess, so that its peak resident memory
(max RSS, which includes the ~0.3 GB of the Python + torch runtime) is its own. Prints the machine, then one
row per case with the median latency, clips per second and the ratio to AST at the same input (AST from
`ASTConfig()` with `max_length` = frames; run only up to --ast-max-frames since attention grows
quadratically). Random weights and inputs: speed does not depend on them.

With --lengths-seconds (long inputs, DASS only, 100 frames per second, batch 1): one row per length with the
inference path taken (--path: "auto" lets the model choose, "lean"/"standard" force one), wall time, process
CPU time (user + system: less disturbed than wall time when other jobs share the cores), both per second of
audio and as a ratio to the first length of the same run, and peak RSS. Long cases run once, after a
warm-up on a 10 s input.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys

import torch

from bench.cpu import build_model  # scripts/bench: the helpers every benchmark script shares
from bench.machine import cpu_name, peak_rss_mb
from bench.timing import timed_runs


def run_long_case(args: argparse.Namespace) -> None:
    """Child process: one long input through DASS with the chosen inference path; prints a JSON line."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.model, args.frames, scan_backend=args.backend)
    inputs = torch.randn(1, args.frames, 128)
    long = args.frames > 8192
    with torch.inference_mode():
        lean = model.dass._use_lean_path(inputs, args.path)
        timing = timed_runs(
            lambda: model(inputs, inference_mode=args.path),
            1 if long else args.repeats,
            warmup=(lambda: model(inputs[:, :1000], inference_mode=args.path)) if long else None,
        )
    result = {"latency": timing["wall"], "cpu": timing["cpu"], "peak_mb": peak_rss_mb()}
    print(json.dumps({**result, "path": "lean" if lean else "standard"}))


def long_inputs(args: argparse.Namespace) -> None:
    """Parent of --lengths-seconds: one subprocess per (model, backend, length); costs relative to the first length."""
    versions = f"torch {torch.__version__}, python {platform.python_version()}"
    print(f"machine: {cpu_name()}, {args.threads} threads, {versions}")
    print(
        f"{'model':<24} {'audio s':>8} {'frames':>7} {'path':>8} {'wall s':>8} {'wall/audio s':>12} {'ratio':>6} "
        f"{'cpu s':>8} {'cpu/audio s':>11} {'ratio':>6} {'peak MB':>8}"
    )
    for model in args.models:
        for backend in args.backends:
            first = None
            for seconds in args.lengths_seconds:
                frames = round(seconds * 100)
                extra = ["--long-case", "--path", args.path]
                result = measure(args, model, backend, frames, 1, extra)
                if result is None:
                    continue
                wall, cpu = result["latency"] / seconds, result["cpu"] / seconds
                first = first or (wall, cpu)
                print(
                    f"{f'DASS-{model} ({backend})':<24} {seconds:>8g} {frames:>7} {result['path']:>8} "
                    f"{result['latency']:>8.2f} {wall:>12.4f} {wall / first[0]:>6.2f} {result['cpu']:>8.1f} "
                    f"{cpu:>11.4f} {cpu / first[1]:>6.2f} {result['peak_mb']:>8.0f}",
                    flush=True,
                )


def run_case(args: argparse.Namespace) -> None:
    """Child process: time one case and print a JSON line."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.model, args.frames, scan_backend=args.backend)
    if args.model != "ast":
        from transformers_dass.ops import resolve_backend

        resolved = resolve_backend(args.backend, "cpu")
        if resolved != args.backend:
            raise SystemExit(f"backend {args.backend} unavailable (would run {resolved})")
    inputs = torch.randn(args.batch, args.frames, 128)
    repeats = args.repeats if args.frames * args.batch <= 8192 else max(1, args.repeats // 3)
    with torch.inference_mode():
        latency = timed_runs(lambda: model(inputs), repeats)["wall"]
    print(json.dumps({"latency": latency, "peak_mb": peak_rss_mb()}))


def measure(
    args: argparse.Namespace, model: str, backend: str, frames: int, batch: int, extra: list[str] | None = None
) -> dict | None:
    command = [
        sys.executable, __file__, "--case", "--model", model, "--backend", backend, "--frames", str(frames),
        "--batch", str(batch), "--threads", str(args.threads), "--repeats", str(args.repeats), *(extra or []),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print(f"  skipped {model}/{backend}/{frames}/{batch}: {result.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, nargs="+", default=[1024], help="10 ms frames (1024 = AST's 10 s).")
    parser.add_argument("--batch", type=int, nargs="+", default=[1])
    parser.add_argument("--backends", nargs="+", default=["reference", "cpu"])
    parser.add_argument("--models", nargs="+", default=["small", "medium"], choices=["small", "medium"])
    parser.add_argument("--ast-max-frames", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--lengths-seconds", type=float, nargs="+", help="Long-input mode: audio lengths in seconds (first = baseline)."
    )
    parser.add_argument(
        "--path", default="auto", choices=["auto", "lean", "standard"], help="Inference path (long-input mode)."
    )
    parser.add_argument("--case", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--long-case", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="reference", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        args.frames, args.batch = args.frames[0], args.batch[0]
        run_long_case(args) if args.long_case else run_case(args)
        return
    if args.lengths_seconds:
        long_inputs(args)
        return

    print(f"machine: {cpu_name()}, {args.threads} threads, torch {torch.__version__}, python {platform.python_version()}")
    print(f"{'model':<28} {'frames':>7} {'batch':>5} {'latency s':>10} {'clips/s':>8} {'peak MB':>8} {'vs AST':>7}")
    for frames in args.frames:
        for batch in args.batch:
            ast = measure(args, "ast", "-", frames, batch) if frames <= args.ast_max_frames else None
            cases = [("AST (ASTConfig())", ast)] if ast else []
            for model in args.models:
                for backend in args.backends:
                    cases.append((f"DASS-{model} ({backend})", measure(args, model, backend, frames, batch)))
            for name, result in cases:
                if result is None:
                    continue
                ratio = f"{result['latency'] / ast['latency']:.3f}" if ast else "-"
                print(
                    f"{name:<28} {frames:>7} {batch:>5} {result['latency']:>10.3f} "
                    f"{batch / result['latency']:>8.2f} {result['peak_mb']:>8.0f} {ratio:>7}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
