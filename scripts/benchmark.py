"""Latency, throughput and peak memory of DASS against transformers' AST, measured in one run on this machine.

    python scripts/benchmark.py [--threads 2] [--frames 1024 6000 60000] [--batch 1 8]
                                [--backends reference cpu] [--models small medium] [--ast-max-frames 1024]

Every (model, scan backend, frames, batch) case runs in its own subprocess, so that its peak resident memory
(max RSS, which includes the ~0.3 GB of the Python + torch runtime) is its own. Prints the machine, then one
row per case with the median latency, clips per second and the ratio to AST at the same input (AST from
`ASTConfig()` with `max_length` = frames; run only up to --ast-max-frames since attention grows
quadratically). Random weights and inputs: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch


def median_latency(model: torch.nn.Module, inputs: torch.Tensor, repeats: int, warmup: int = 1) -> float:
    """Median wall time in seconds of `model(inputs)` in inference mode."""
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            model(inputs)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_model(name: str, backend: str, frames: int) -> torch.nn.Module:
    if name == "ast":
        from transformers import ASTConfig, ASTForAudioClassification

        return ASTForAudioClassification(ASTConfig(max_length=frames)).eval()
    from transformers_dass import DassConfig, DassForAudioClassification

    config = DassConfig.small() if name == "small" else DassConfig.medium()
    config.scan_backend = backend
    return DassForAudioClassification(config).eval()


def run_case(args: argparse.Namespace) -> None:
    """Child process: time one case and print a JSON line."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.model, args.backend, args.frames)
    if args.model != "ast":
        from transformers_dass.ops import resolve_backend

        resolved = resolve_backend(args.backend, "cpu")
        if resolved != args.backend:
            raise SystemExit(f"backend {args.backend} unavailable (would run {resolved})")
    inputs = torch.randn(args.batch, args.frames, 128)
    repeats = args.repeats if args.frames * args.batch <= 8192 else max(1, args.repeats // 3)
    latency = median_latency(model, inputs, repeats)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"latency": latency, "peak_mb": peak_mb}))


def measure(args: argparse.Namespace, model: str, backend: str, frames: int, batch: int) -> dict | None:
    command = [
        sys.executable, __file__, "--case", "--model", model, "--backend", backend, "--frames", str(frames),
        "--batch", str(batch), "--threads", str(args.threads), "--repeats", str(args.repeats),
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
    parser.add_argument("--case", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="reference", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        args.frames, args.batch = args.frames[0], args.batch[0]
        run_case(args)
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
