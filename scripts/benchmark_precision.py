#!/usr/bin/env python
"""CPU speed of DASS-small and transformers' AST in each inference precision, measured in one run on this machine.

    OMP_WAIT_POLICY=PASSIVE python scripts/benchmark_precision.py [--threads 2] [--batch 1 8] [--repeats 3]

Precisions: float32; bfloat16 with the weights cast (`precision.apply_precision`, as `--dtype bfloat16`);
float32 weights under `torch.autocast("cpu", torch.bfloat16)`; float32-aten: DASS float32 with its linears through
ATen rather than oneDNN (`fused_linear.py`), for comparison; int8 dynamic quantisation of the linears
(`apply_precision(..., "int8")`; for AST all of its linears). 10 s inputs (1024 frames x 128 mel bins), random
weights (speed does not depend on them). Prints the median wall time and process CPU time (user + system, less
disturbed than wall time when other jobs share the cores) per forward, and ratios against AST float32 and against
AST in the same precision. Runs in one process, the cases interleaved over the repeats so that a change in the
machine's load hits all of them alike.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import cpu_name  # noqa: E402

from transformers_dass import DassConfig, DassForAudioClassification
from transformers_dass.model import fused_linear  # noqa: E402
from transformers_dass.inference.precision import apply_precision, resolve_dtype  # noqa: E402

PRECISIONS = ("float32", "bfloat16", "bf16-autocast", "int8", "float32-aten")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def build(name: str):
    if name == "ast":
        from transformers import ASTConfig, ASTForAudioClassification

        return ASTForAudioClassification(ASTConfig()).eval()
    return DassForAudioClassification(DassConfig.small()).eval()


@contextlib.contextmanager
def aten_linears():
    """DASS's block linears through ATen (MKL sgemm for float32) instead of oneDNN: the state before fused_linear.py."""
    original = fused_linear._takes_onednn
    fused_linear._takes_onednn = lambda *args: False
    try:
        yield
    finally:
        fused_linear._takes_onednn = original


def variant(model, precision: str):
    """(model in `precision`, context manager to run it in)."""
    if precision == "float32-aten":
        return model, aten_linears
    if precision == "bf16-autocast":
        return model, lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    concrete = {"float32": "float32", "bfloat16": "bfloat16", "int8": "int8"}[precision]
    return apply_precision(copy.deepcopy(model), concrete), contextlib.nullcontext


def inputs_for(key: tuple[str, str], inputs: torch.Tensor) -> torch.Tensor:
    """AST's forward does not cast its input to its weights' dtype (DASS's does): give it bf16 features when cast."""
    name, precision = key
    return inputs.to(torch.bfloat16) if name == "ast" and precision == "bfloat16" else inputs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, nargs="+", default=[1])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["dass-small", "ast"], choices=["dass-small", "ast"])
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=list(PRECISIONS[:4]),
        choices=PRECISIONS,
        help="float32-aten: DASS float32 with its linears through ATen instead of oneDNN (for comparison)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"machine: {cpu_name()}, {args.threads} threads, torch {torch.__version__}, python {platform.python_version()}")
    print(f"--dtype auto here: {resolve_dtype('auto')[1]}")
    cases = {}
    for name in args.models:
        base = build(name)
        for precision in args.precisions:
            if not (precision == "float32-aten" and name == "ast"):
                cases[(name, precision)] = variant(base, precision)
    results = {}
    for batch in args.batch:
        inputs = torch.randn(batch, 1024, 128)
        timings = {key: [] for key in cases}
        with torch.inference_mode():
            for key, (model, context) in cases.items():  # warm-up
                with context():
                    model(inputs_for(key, inputs))
            for _ in range(args.repeats):
                for key, (model, context) in cases.items():
                    with context():
                        start, start_cpu = time.perf_counter(), cpu_seconds()
                        model(inputs_for(key, inputs))
                        timings[key].append((time.perf_counter() - start, cpu_seconds() - start_cpu))
        for key, values in timings.items():
            results[(batch, *key)] = (statistics.median(w for w, _ in values), statistics.median(c for _, c in values))
    print(f"{'model':<11} {'precision':<14} {'batch':>5} {'wall s':>8} {'cpu s':>8} {'clips/s':>8} "
          f"{'AST fp32 / this (cpu)':>22} {'AST same / this (cpu)':>22}")
    for (batch, name, precision), (wall, cpu) in results.items():
        ast_fp32 = results.get((batch, "ast", "float32"))
        ast_same = results.get((batch, "ast", precision))
        vs_fp32 = f"{ast_fp32[1] / cpu:.1f}x" if ast_fp32 else "-"
        vs_same = f"{ast_same[1] / cpu:.1f}x" if ast_same else "-"
        print(f"{name:<11} {precision:<14} {batch:>5} {wall:>8.3f} {cpu:>8.3f} {batch / wall:>8.2f} {vs_fp32:>22} {vs_same:>22}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
