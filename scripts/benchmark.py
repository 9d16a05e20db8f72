"""Latency of DASS against transformers' AST, measured in the same run on this machine.

    python scripts/benchmark.py [--threads 2] [--frames 1024] [--batch 1] [--repeats 5] [--backend reference]

Prints the machine, then one row per model: median latency and its ratio to AST (ASTConfig() defaults,
random weights: speed does not depend on the weights). Results go to BENCHMARKS.md with this command.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from transformers import ASTConfig, ASTForAudioClassification

from transformers_dass import DassConfig, DassForAudioClassification


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


def machine() -> str:
    return f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=1024, help="10 ms frames per clip (1024: AST's 10 s input).")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backend", default="reference", help="DASS scan backend (config.scan_backend).")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    frames = args.frames
    inputs = torch.randn(args.batch, frames, 128)
    print(f"machine: {machine()}")
    print(f"input: batch {args.batch}, {frames} frames ({frames / 100:g} s) x 128 mel bins, float32")

    ast_config = ASTConfig(max_length=frames)
    ast = ASTForAudioClassification(ast_config).eval()
    ast_time = median_latency(ast, inputs, args.repeats)
    rows = [("AST (ASTConfig())", ast_time)]
    del ast
    for name, config in (("DASS-small", DassConfig.small()), ("DASS-medium", DassConfig.medium())):
        config.scan_backend = args.backend
        model = DassForAudioClassification(config).eval()
        rows.append((f"{name} ({args.backend} scan)", median_latency(model, inputs, args.repeats)))
        del model

    print(f"{'model':<34} {'latency (s)':>12} {'vs AST':>8}")
    for name, seconds in rows:
        print(f"{name:<34} {seconds:>12.3f} {seconds / ast_time:>8.3f}")


if __name__ == "__main__":
    main()
