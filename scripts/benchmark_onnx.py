"""ONNX Runtime against PyTorch for the same DASS model, measured in one run on this machine.

    python scripts/benchmark_onnx.py [--model small|medium] [--threads 2] [--cases 1024x1 1024x8 6000x1 60000x1]
                                     [--repeats 3] [--onnx FILE]

Builds the model with random weights (speed does not depend on them), exports it once with
`transformers_dass.inference.onnx_export.export_onnx` (or reuses --onnx FILE if it exists), then for each case FRAMESxBATCH
times PyTorch (the model as users call it: every setting "auto", so the compiled scan where it is built and, from
`config.lean_threshold_frames` frames, the lean path) and an ONNX Runtime session on the CPU with the same number
of threads. Prints the machine, then one row per case: median wall time and process CPU time of each, the ratio
ONNX Runtime / PyTorch (< 1: ONNX Runtime is faster) and the largest logit difference.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import cpu_name  # noqa: E402  (the machine line of scripts/benchmark.py)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(run, repeats: int) -> tuple[float, float, object]:
    """(median wall s, median CPU s, last result) of `run()` after one warm-up call."""
    result = run()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), cpu_seconds()
        result = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(cpu_seconds() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def compare_onnx_runtime(model, session, frames: int, batch: int, repeats: int = 3) -> dict:
    """Time `model` (PyTorch, inference mode) and `session` (ONNX Runtime) on one random (batch, frames, bins) input.

    Returns {"frames", "batch", "torch_wall", "torch_cpu", "ort_wall", "ort_cpu", "max_abs_diff"} (seconds)."""
    inputs = torch.randn(batch, frames, model.config.num_mel_bins)
    feed = {"input_values": inputs.numpy()}

    def run_torch():
        with torch.inference_mode():
            return model(inputs).logits

    torch_wall, torch_cpu, expected = timed(run_torch, repeats)
    ort_wall, ort_cpu, got = timed(lambda: session.run(["logits"], feed)[0], repeats)
    diff = float((torch.from_numpy(got) - expected).abs().max())
    return dict(frames=frames, batch=batch, torch_wall=torch_wall, torch_cpu=torch_cpu, ort_wall=ort_wall,
                ort_cpu=ort_cpu, max_abs_diff=diff)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("small", "medium"), default="small")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", nargs="+", default=["1024x1", "1024x8", "6000x1", "60000x1"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--onnx", help="Graph to reuse (exported here if the file does not exist).")
    args = parser.parse_args()

    import onnxruntime as ort

    from transformers_dass import DassConfig, DassForAudioClassification
    from transformers_dass.inference.onnx_export import export_onnx
    from transformers_dass.ops import resolve_backend

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = DassConfig.small() if args.model == "small" else DassConfig.medium()
    model = DassForAudioClassification(config).eval()
    path = Path(args.onnx) if args.onnx else Path(tempfile.mkdtemp()) / f"dass-{args.model}.onnx"
    if not path.exists():
        start = time.perf_counter()
        export_onnx(model, path)
        print(f"exported {path} in {time.perf_counter() - start:.0f} s")
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    print(
        f"machine: {cpu_name()}, {args.threads} threads, torch {torch.__version__} (scan backend "
        f"{resolve_backend('auto')}), onnxruntime {ort.__version__}; DASS-{args.model}, random weights"
    )
    print("| frames | batch | PyTorch wall (s) | ORT wall (s) | ORT / PyTorch wall | PyTorch CPU (s) | ORT CPU (s) "
          "| ORT / PyTorch CPU | max |logit diff| |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for case in args.cases:
        frames, batch = (int(v) for v in case.split("x"))
        r = compare_onnx_runtime(model, session, frames, batch, repeats=args.repeats if frames < 20000 else 1)
        print(
            f"| {frames} | {batch} | {r['torch_wall']:.3f} | {r['ort_wall']:.3f} | {r['ort_wall'] / r['torch_wall']:.2f} "
            f"| {r['torch_cpu']:.2f} | {r['ort_cpu']:.2f} | {r['ort_cpu'] / r['torch_cpu']:.2f} | {r['max_abs_diff']:.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
