"""CPU time of the compiled scan op per instruction-set variant and dtype, measured in one run on this machine.

    OMP_WAIT_POLICY=PASSIVE python kernels/selective_scan/bench/benchmark_cpu.py [--threads 2] [--backward]

For each DASS-small stage shape at 10 s (batch 1: grids 32x256 ... 4x32, channels 96 ... 768, N = 1), runs
`torch.ops.dass.cross_scan_fwd` (and, with --backward, `cross_scan_bwd`) with every variant this CPU supports
forced in turn and u / delta in float32, bfloat16 and float16. Prints milliseconds of process CPU time per call
(user + system of all threads: less disturbed by other jobs than wall time; the least over --rounds rounds of
--repeats calls, since interference only ever adds time) and the ratio to the float32 portable ("default")
variant of the same shape, measured in the same run.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

import dass_selective_scan

STAGES = [((32, 256), 96), ((16, 128), 192), ((8, 64), 384), ((4, 32), 768)]  # DASS-small, 1024 frames
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def scan_inputs(height: int, width: int, channels: int, dtype: torch.dtype) -> tuple:
    generator = torch.Generator().manual_seed(0)
    length = height * width

    def randn(*shape):
        return torch.randn(*shape, generator=generator)

    return (
        randn(1, length, channels).to(dtype),
        (randn(1, 4, length, channels) - 2.0).to(dtype),
        -(torch.rand(4, channels, 1, generator=generator) + 0.5),
        randn(1, 4, length, 1).to(dtype),
        randn(1, 4, length, 1).to(dtype),
        randn(4, channels),
        randn(4, channels) * 0.5,
        height,
        width,
    )


def cpu_ms(call, repeats: int, rounds: int) -> float:
    call()  # warm-up: workspaces, page faults
    per_call = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(repeats):
            call()
        per_call.append((time.process_time() - start) / repeats * 1e3)
    return min(per_call)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backward", action="store_true", help="time cross_scan_bwd as well")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    isas = dass_selective_scan.supported_cpu_isas()
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads, "
          f"variants {', '.join(isas)} (auto: {dass_selective_scan.cpu_isa()})")
    ops = ["fwd", "bwd"] if args.backward else ["fwd"]
    print("| op | grid | channels | dtype | " + " | ".join(f"{isa} ms (x)" for isa in isas) + " |")
    print("| --- | --- | ---: | --- | " + " | ".join("---:" for _ in isas) + " |")
    previous = dass_selective_scan.cpu_isa()
    try:
        for op in ops:
            for (height, width), channels in STAGES:
                baseline = None
                for name, dtype in DTYPES.items():
                    inputs = scan_inputs(height, width, channels, dtype)
                    dy = torch.randn(1, height * width, channels).to(dtype)
                    cells = []
                    for isa in isas:
                        dass_selective_scan.set_cpu_isa(isa)
                        if op == "fwd":
                            ms = cpu_ms(lambda: torch.ops.dass.cross_scan_fwd(*inputs), args.repeats, args.rounds)
                        else:
                            ms = cpu_ms(lambda: torch.ops.dass.cross_scan_bwd(dy, *inputs), args.repeats, args.rounds)
                        baseline = baseline or ms  # float32, first (portable) variant
                        cells.append(f"{ms:.2f} ({baseline / ms:.1f}x)")
                    print(f"| {op} | {height}x{width} | {channels} | {name} | " + " | ".join(cells) + " |")
    finally:
        dass_selective_scan.set_cpu_isa(previous)


if __name__ == "__main__":
    main()
