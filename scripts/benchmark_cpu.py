"""CPU speed side by side: AST, PANNs CNN14 and DASS in each precision (and DASS on ONNX Runtime), in one run.

    OMP_WAIT_POLICY=PASSIVE python scripts/benchmark_cpu.py                  # 10 s (batch 1, 8) and 60 s
    OMP_WAIT_POLICY=PASSIVE python scripts/benchmark_cpu.py --seconds 600    # the 10-minute inputs alone
    python scripts/benchmark_cpu.py --quick                                  # 10 s, batch 1, few repeats
    python scripts/benchmark_cpu.py --models ast small --precisions fp32 bf16-autocast --seconds 10 --batch 1 8

Prints the machine (CPU model, its ISA flags, torch and ONNX Runtime versions, threads), then a markdown table with
one row per case: median wall time and process CPU time (user + system, all threads: less disturbed than wall
time when other jobs share the cores) per forward, clips per second, the case's peak RSS, and the speed-up over
AST fp32 at the same audio length, batch and threads measured in the same run (AST fp32 time / case time, from
wall and from CPU time). Then the goals block of the CPU-speed issue, with the ratios it asks for and whether
this run meets them. It is a report, not a test: the numbers are only as good as the machine's quiet.

Cases (each in its own subprocess, so that its peak RSS, which includes ~0.3 GB of Python + torch, is its own):
  models      ast (transformers' ASTForAudioClassification(ASTConfig(max_length=frames)), sdpa attention),
              cnn14 (panns_inference's Cnn14 at 32 kHz, fed the waveform: its STFT + log-mel front-end is inside
              the timed forward, unlike the others, which take features), small, medium (DASS, compiled CPU scan
              when built, otherwise the reference scan, named in the note column).
  precisions  fp32; bf16 (parameters and inputs cast to bfloat16; DASS keeps its scan parameters and head in
              fp32); bf16-autocast (fp32 weights under torch.autocast("cpu", bfloat16)); int8 (dynamic
              quantisation of the linears: int8 weights, activations quantised per call); onnx (DASS only:
              fp32 graph from transformers_dass.inference.onnx_export run by ONNX Runtime with intra-op threads =
              --threads, exported once per model in its own process before its cases; above 60 s only when
              --precisions names it, since ONNX Runtime has no lean path: past 18 GB at 600 s).
              bf16 and int8 are transformers_dass.inference.precision.apply_precision's formats, for every model.
  lengths     --seconds of audio: 10 s = 1024 frames (AST's input; both feature extractors pad 10 s to it),
              otherwise the kaldi frame count of that many seconds at 16 kHz (60 s = 5998 frames); CNN14 gets
              seconds x 32000 samples. Random weights and inputs: speed does not depend on them.
Timing: one warm-up forward, then up to --repeats timed ones while they fit in --budget seconds; when the warm-up
alone exceeds the budget, it is the one measurement (runs "1w": includes first-call costs, which are small next
to a forward that long). AST is not run where its estimated cost is out of reach (see `ast_estimate`): the row
says "skipped" with the estimate and the rule. A case that fails or is missing a package says so in its row.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types

from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import cpu_name, cpu_seconds  # noqa: E402  (scripts/benchmark.py's machine line and CPU clock)

MODELS = ("ast", "cnn14", "small", "medium")
PRECISIONS = ("fp32", "bf16", "bf16-autocast", "int8", "onnx")
LABELS = {"ast": "AST", "cnn14": "PANNs CNN14", "small": "DASS-small", "medium": "DASS-medium"}
# What a full run measures of each model when --precisions is not given: CNN14 is a reference point in fp32.
DEFAULT_PRECISIONS = {
    "ast": ("fp32", "bf16", "bf16-autocast", "int8"),
    "cnn14": ("fp32",),
    "small": PRECISIONS,
    "medium": PRECISIONS,
}
SUPPORTED = {"ast": PRECISIONS[:4], "cnn14": PRECISIONS[:4], "small": PRECISIONS, "medium": PRECISIONS}
ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512dq",
    "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
)  # fmt: skip
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
INSTALL_HINT = 'pip install "transformers-dass[bench]"'
# Precision names of this script -> choices of transformers_dass.inference.precision.apply_precision.
LIBRARY_PRECISION = {"fp32": "float32", "bf16": "bfloat16", "int8": "int8"}
AST_MAX_MEMORY_FRACTION = 0.8  # of MemAvailable: what an AST case may be estimated to need before it is skipped
ASSUMED_FLOPS_PER_THREAD = 200e9  # AST's time estimate before it is measured: 2x what a Zen 5 core reached in fp32
CNN14_SAMPLE_RATE = 32000
ONNX_DEFAULT_MAX_SECONDS = 60  # longer ONNX cases only when asked for (BENCHMARKS.md: >18 GB at 600 s)


class Unavailable(Exception):
    """A case that cannot run on this install; the message says what to install."""


@dataclasses.dataclass(frozen=True)
class Case:
    model: str
    precision: str
    seconds: float
    batch: int
    threads: int

    @property
    def frames(self) -> int:
        return input_frames(self.seconds)

    @property
    def label(self) -> str:
        return f"{LABELS[self.model]} {self.precision} {self.seconds:g} s batch {self.batch} ({self.threads} threads)"


def input_frames(seconds: float) -> int:
    """Frames the models see for `seconds` of audio: kaldi's count at 16 kHz, padded up to AST's 1024."""
    from transformers_dass.audio.fbank import num_frames

    return max(1024, num_frames(round(seconds * 16000)))


# ---------------------------------------------------------------------------------------------------------------
# Machine


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def available_memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def machine_lines(threads: list[int]) -> list[str]:
    flags = cpu_flags()
    isa = " ".join(flag for flag in ISA_FLAGS if flag in flags) or "(no /proc/cpuinfo flags)"
    try:
        import onnxruntime

        ort = f"onnxruntime {onnxruntime.__version__}"
    except ImportError:
        ort = "onnxruntime not installed"
    return [
        f"CPU: {cpu_name()} ({os.cpu_count()} logical CPUs)",
        f"ISA flags: {isa}",
        f"torch {torch.__version__} (ATen CPU capability {torch.backends.cpu.get_cpu_capability()}), {ort}, "
        f"python {platform.python_version()}",
        f"threads: {', '.join(map(str, threads))}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}",
    ]


# ---------------------------------------------------------------------------------------------------------------
# Models, precisions, inputs (child process)


def tiny_dass_config(name: str):
    from transformers_dass import DassConfig

    return DassConfig(dims=[8, 16], depths=[1, 1 if name == "small" else 2], drop_path_rate=0.0)


def build_model(model: str, frames: int, tiny: bool) -> torch.nn.Module:
    """The fp32 model of a case, in eval mode. `tiny`: toy sizes that only check the command runs."""
    if model == "ast":
        from transformers import ASTConfig, ASTForAudioClassification

        sizes = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64) if tiny else {}
        return ASTForAudioClassification(ASTConfig(max_length=frames, **sizes)).eval()
    if model == "cnn14":
        cnn14 = load_cnn14_class()
        return cnn14(
            sample_rate=CNN14_SAMPLE_RATE, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=14000,
            classes_num=527,
        ).eval()  # fmt: skip
    from transformers_dass import DassConfig, DassForAudioClassification

    config = tiny_dass_config(model) if tiny else (DassConfig.small() if model == "small" else DassConfig.medium())
    return DassForAudioClassification(config).eval()


def load_cnn14_class() -> type:
    """panns_inference.models.Cnn14, imported without running panns_inference/__init__.py: that imports its
    config.py, which fetches AudioSet's label list with wget at import time (no network here, and no need)."""
    spec = importlib.util.find_spec("panns_inference")
    if spec is None or spec.submodule_search_locations is None:
        raise Unavailable(f"panns-inference is not installed: {INSTALL_HINT}")
    if "panns_inference" not in sys.modules:
        package = types.ModuleType("panns_inference")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["panns_inference"] = package
    try:
        return importlib.import_module("panns_inference.models").Cnn14
    except ImportError as error:  # torchlibrosa / librosa / matplotlib
        raise Unavailable(f"panns_inference.models needs {error.name}: {INSTALL_HINT}") from error


def apply_precision(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """The one place where a case's precision is applied to its fp32 model: every model gets the library's recipe
    (transformers_dass.inference.precision: bf16 casts parameters, keeping those a DASS model lists in fp32; int8 quantises
    the linears dynamically, int8 weights with per-channel scales). bf16-autocast leaves the model in fp32 and is
    applied around the call."""
    if precision == "bf16-autocast":
        return model
    from transformers_dass.inference.precision import apply_precision as library_apply

    return library_apply(model, LIBRARY_PRECISION[precision])


def make_inputs(model: str, case_frames: int, seconds: float, batch: int) -> torch.Tensor:
    if model == "cnn14":
        return 0.1 * torch.randn(batch, round(seconds * CNN14_SAMPLE_RATE))
    return torch.randn(batch, case_frames, 128)


# ---------------------------------------------------------------------------------------------------------------
# Timing (child process)


def timed_runs(call, repeats: int, budget: float) -> dict:
    """One warm-up `call()`, then up to `repeats` timed calls while they fit in `budget` seconds.

    Returns the medians of wall and process CPU time (s), the number of timed runs and whether the warm-up had to
    serve as the only measurement (when it alone took longer than `budget`)."""
    start, start_cpu = time.perf_counter(), cpu_seconds()
    call()
    warm_wall, warm_cpu = time.perf_counter() - start, cpu_seconds() - start_cpu
    count = min(repeats, int(budget // warm_wall)) if warm_wall > 0 else repeats
    if count == 0:
        return {"wall": warm_wall, "cpu": warm_cpu, "runs": 1, "warmup_only": True}
    walls, cpus = [], []
    for _ in range(count):
        start, start_cpu = time.perf_counter(), cpu_seconds()
        call()
        walls.append(time.perf_counter() - start)
        cpus.append(cpu_seconds() - start_cpu)
    return {"wall": statistics.median(walls), "cpu": statistics.median(cpus), "runs": count, "warmup_only": False}


def torch_call(model: torch.nn.Module, inputs: torch.Tensor, autocast: bool):
    def call():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            model(inputs)

    return call


def dass_note(model: torch.nn.Module, inputs: torch.Tensor) -> str:
    from transformers_dass.ops import resolve_backend

    backend = resolve_backend(model.config.scan_backend, "cpu")
    with torch.inference_mode():
        lean = model.dass._use_lean_path(inputs, None)
    return f"{backend} scan, {'lean' if lean else 'standard'} path"


def run_case(spec: dict) -> dict:
    """Child process: build, time and measure one case; returns the JSON-able result."""
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    model_name, precision = spec["model"], spec["precision"]
    frames = input_frames(spec["seconds"])
    inputs = make_inputs(model_name, frames, spec["seconds"], spec["batch"])
    note = ""
    if precision == "onnx":
        call = onnx_call(spec["onnx_path"], inputs, spec["threads"])
        note = "ONNX Runtime, CPU provider"
    else:
        model = build_model(model_name, frames, spec["tiny"])
        is_dass = model_name in ("small", "medium")
        if is_dass:
            note = dass_note(model, inputs)
        model = apply_precision(model, precision)
        if precision == "bf16" and not is_dass:
            inputs = inputs.to(torch.bfloat16)  # DASS casts its input to its weights' dtype itself
        call = torch_call(model, inputs, autocast=precision == "bf16-autocast")
    result = timed_runs(call, spec["repeats"], spec["budget"])
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["note"] = note
    return result


# ---------------------------------------------------------------------------------------------------------------
# ONNX


def onnxruntime_missing() -> str | None:
    if importlib.util.find_spec("onnxruntime") is None:
        return f"onnxruntime is not installed: {INSTALL_HINT}"
    return None


def export_onnx_model(spec: dict) -> dict:
    """Child process: export the fp32 DASS model of `spec` to spec["onnx_path"]; returns the export's cost."""
    if importlib.util.find_spec("transformers_dass.inference.onnx_export") is None:
        raise Unavailable("this install has no transformers_dass.inference.onnx_export")
    from transformers_dass.inference.onnx_export import export_onnx

    for package in ("onnx", "onnxscript"):  # what torch.onnx.export(dynamo=True) writes through
        if importlib.util.find_spec(package) is None:
            raise Unavailable(f"{package} is not installed: {INSTALL_HINT}")
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    model = build_model(spec["model"], 1024, spec["tiny"])
    start = time.perf_counter()
    export_onnx(model, spec["onnx_path"])
    size_mb = os.path.getsize(spec["onnx_path"]) / 2**20
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"export_s": time.perf_counter() - start, "size_mb": size_mb, "peak_mb": peak_mb}


def onnx_call(path: str, inputs: torch.Tensor, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
        # ORT's own thread pool spins like OpenMP's active policy; keep the two alike.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = {"input_values": inputs.numpy()}
    return lambda: session.run(["logits"], feed)


# ---------------------------------------------------------------------------------------------------------------
# AST's reach


def ast_estimate(frames: int, batch: int, tiny: bool = False) -> dict:
    """Work and memory of one AST forward at `frames` (ASTConfig() sizes, or the tiny ones).

    tokens = 12 frequency x ((frames - 16) // 10 + 1) time patches + 2; per layer, the linears cost 24 d^2 flops per
    token and attention 4 N^2 d. Memory: transformers' default sdpa attention runs torch's blocked (flash) CPU
    kernel, so what grows is the activations (the MLP's N x 4d the widest) plus the parameters; eager attention
    would hold heads x N^2 float32 scores (and as many probabilities) per layer, reported for comparison."""
    hidden, layers, heads = (32, 1, 2) if tiny else (768, 12, 12)
    tokens = 12 * ((frames - 16) // 10 + 1) + 2
    flops = batch * layers * (24 * hidden**2 * tokens + 4 * tokens**2 * hidden)
    activations = batch * tokens * hidden * 4 * (4 + 4)  # a few N x d tensors and the N x 4d MLP activations
    eager_scores = 2 * batch * heads * tokens**2 * 4
    return {"tokens": tokens, "flops": flops, "memory": activations + 86e6 * 4, "eager_scores": eager_scores}


def ast_skip_reason(
    frames: int, batch: int, threads: int, rate: float | None, max_seconds: float, tiny: bool
) -> str | None:
    """Why AST is not run at this size, or None. Rule: skip when the estimated memory exceeds 80 % of MemAvailable,
    or when the estimated time exceeds max_seconds: flops / the fp32 rate AST reached earlier in this run, or,
    before any AST measurement, ASSUMED_FLOPS_PER_THREAD (above what CPUs reach in fp32: the time is a lower bound)."""
    estimate = ast_estimate(frames, batch, tiny)
    available = available_memory_bytes()
    if available is not None and estimate["memory"] > AST_MAX_MEMORY_FRACTION * available:
        return f"needs ~{estimate['memory'] / 1e9:.0f} GB, {available / 1e9:.0f} GB available"
    if rate is None:
        source = f"an assumed {ASSUMED_FLOPS_PER_THREAD / 1e9:g} GFLOP/s per thread"
        rate = ASSUMED_FLOPS_PER_THREAD * threads
    else:
        source = "this run's AST fp32 rate"
    seconds = estimate["flops"] / rate
    if seconds > max_seconds:
        return (
            f"needs ~{estimate['flops'] / 1e12:.0f} TFLOP, ~{seconds / 60:.0f} min per forward at {source} "
            f"(limit --max-case-seconds {max_seconds:g}); memory ~{estimate['memory'] / 1e9:.1f} GB with sdpa "
            f"attention (eager attention scores alone: ~{estimate['eager_scores'] / 1e9:.0f} GB)"
        )
    return None


# ---------------------------------------------------------------------------------------------------------------
# Parent: run the cases


def run_child(args: argparse.Namespace, mode: str, spec: dict) -> dict:
    """Run `mode` ("case" or "export") for `spec` in a subprocess; a result dict with "status"."""
    command = [sys.executable, os.path.abspath(__file__), f"--{mode}", json.dumps(spec)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.case_timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"timed out after {args.case_timeout:g} s (--case-timeout)"}
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        return json.loads(lines[-1])
    if done.returncode in (-9, 137):
        return {"status": "failed", "reason": "killed (out of memory?)"}
    if done.returncode < 0:
        return {"status": "failed", "reason": f"killed by signal {-done.returncode}"}
    last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    return {"status": "failed", "reason": last[:300]}


def child_main(mode: str, spec: dict) -> None:
    try:
        result = {"status": "ok", **(run_case(spec) if mode == "case" else export_onnx_model(spec))}
    except Unavailable as error:
        result = {"status": "not available", "reason": str(error)}
    except (torch.OutOfMemoryError, MemoryError):
        result = {"status": "failed", "reason": "out of memory"}
    except RuntimeError as error:  # the CPU allocator's out-of-memory error is a plain RuntimeError
        if "can't allocate memory" not in str(error):
            raise
        result = {"status": "failed", "reason": f"out of memory: {str(error)[:200]}"}
    print(json.dumps(result), flush=True)


def plan(args: argparse.Namespace) -> list[Case]:
    """Cases in report order: per thread count, length and batch, AST fp32 first (the baseline)."""
    cases = []
    for threads in args.threads:
        for seconds in args.seconds:
            for batch in args.batch if seconds <= 10 else [1]:
                for model in args.models:
                    wanted = args.precisions if args.precisions else DEFAULT_PRECISIONS[model]
                    for precision in PRECISIONS:
                        if precision in wanted and precision in SUPPORTED[model]:
                            cases.append(Case(model, precision, seconds, batch, threads))
    baseline_first = lambda case: (case.model, case.precision) != ("ast", "fp32")  # noqa: E731
    cases.sort(key=lambda case: (case.threads, case.seconds, case.batch, baseline_first(case)))
    return cases


def run_all(args: argparse.Namespace, cases: list[Case], workdir: str) -> tuple[list[dict], list[str]]:
    """Run every case in its own process; returns one result row per case and notes (ONNX exports)."""
    rows, notes, exports = [], [], {}
    ast_rate: dict[int, float] = {}  # threads -> AST fp32 flops per second measured so far
    for index, case in enumerate(cases, 1):
        row = {**dataclasses.asdict(case), "frames": case.frames}
        spec = {**row, "repeats": args.repeats, "budget": args.budget, "tiny": args.tiny}
        reason = None
        if case.model == "ast":
            rate = ast_rate.get(case.threads)
            reason = ast_skip_reason(case.frames, case.batch, case.threads, rate, args.max_case_seconds, args.tiny)
        if case.precision == "onnx" and case.seconds > ONNX_DEFAULT_MAX_SECONDS and not args.precisions:
            reason = (
                f"ONNX Runtime runs the standard forward (no lean path), past 18 GB at 600 s; "
                f"--precisions onnx runs it above {ONNX_DEFAULT_MAX_SECONDS} s"
            )
        if reason is not None:
            result = {"status": "skipped", "reason": reason}
        elif case.precision == "onnx":
            result = onnx_case(args, case, spec, workdir, exports, notes)
        else:
            result = run_child(args, "case", spec)
        row.update(result)
        if case.model == "ast" and case.precision == "fp32" and row["status"] == "ok":
            ast_rate[case.threads] = ast_estimate(case.frames, case.batch, args.tiny)["flops"] / row["wall"]
        rows.append(row)
        ok = row["status"] == "ok"
        outcome = f"{row['wall']:.3f} s wall, {row['cpu']:.3f} s CPU" if ok else f"{row['status']}: {row['reason']}"
        print(f"[{index}/{len(cases)}] {case.label}: {outcome}", file=sys.stderr, flush=True)
    return rows, notes


def onnx_case(args, case: Case, spec: dict, workdir: str, exports: dict, notes: list[str]) -> dict:
    """The ONNX Runtime case: export the model once (own process), then time the session in another."""
    missing = onnxruntime_missing()
    if missing:
        return {"status": "not available", "reason": missing}
    key = (case.model, case.threads)
    if key not in exports:
        path = os.path.join(workdir, f"{case.model}.onnx")
        export = run_child(args, "export", {**spec, "onnx_path": path})
        exports[key] = (path, export)
        if export["status"] == "ok":
            notes.append(
                f"ONNX export of {LABELS[case.model]} ({case.threads} threads): {export['export_s']:.1f} s, "
                f"{export['size_mb']:.0f} MB file, peak RSS {export['peak_mb']:.0f} MB"
            )
    path, export = exports[key]
    if export["status"] != "ok":
        return {"status": export["status"], "reason": f"export: {export['reason']}"}
    return run_child(args, "case", {**spec, "onnx_path": path})


# ---------------------------------------------------------------------------------------------------------------
# Report


def baseline(rows: list[dict], row: dict) -> dict | None:
    """AST fp32 at the row's length, batch and threads, measured in this run, or None."""
    for other in rows:
        same = all(other[key] == row[key] for key in ("seconds", "batch", "threads"))
        if same and other["model"] == "ast" and other["precision"] == "fp32" and other["status"] == "ok":
            return other
    return None


def speedups(rows: list[dict], row: dict) -> tuple[float, float] | None:
    """(wall, CPU) speed-up of `row` over AST fp32 at its size: AST's time / the row's time (>1 = faster)."""
    base = baseline(rows, row)
    if base is None or row["status"] != "ok":
        return None
    return base["wall"] / row["wall"], base["cpu"] / row["cpu"]


def markdown_table(rows: list[dict]) -> list[str]:
    lines = [
        "| model | precision | audio | batch | threads | runs | wall (s) | CPU (s) | clips/s | peak RSS (MB) "
        "| vs AST fp32 (wall) | vs AST fp32 (CPU) | note |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        audio = f"{row['seconds']:g} s"
        head = f"| {LABELS[row['model']]} | {row['precision']} | {audio} | {row['batch']} | {row['threads']} |"
        if row["status"] != "ok":
            lines.append(f"{head} | | | | | | | {row['status']}: {row['reason']} |")
            continue
        ratio = speedups(rows, row)
        wall_ratio, cpu_ratio = (f"{r:.2f}x" for r in ratio) if ratio else ("-", "-")
        runs = "1w" if row["warmup_only"] else str(row["runs"])
        lines.append(
            f"{head} {runs} | {row['wall']:.3f} | {row['cpu']:.3f} | {row['batch'] / row['wall']:.2f} | "
            f"{row['peak_mb']:.0f} | {wall_ratio} | {cpu_ratio} | {row['note']} |"
        )
    return lines


def find(rows: list[dict], model: str, precisions, seconds: float, batch: int, threads: int) -> dict | None:
    """The fastest measured row (by wall time) of `model` among `precisions` at this size, or None."""
    matches = [
        row
        for row in rows
        if row["model"] == model and row["precision"] in precisions and row["status"] == "ok"
        and (row["seconds"], row["batch"], row["threads"]) == (seconds, batch, threads)
    ]  # fmt: skip
    return min(matches, key=lambda row: row["wall"], default=None)


def goal_line(name: str, target: float, fast: dict | None, slow: dict | None, what: str) -> str:
    """`slow`'s time / `fast`'s time against `target`, in wall and CPU time; "met" judged on wall time."""
    if fast is None or slow is None:
        return f"- {name}: not measured in this run (needs {what})"
    wall, cpu = slow["wall"] / fast["wall"], slow["cpu"] / fast["cpu"]
    verdict = "met" if wall >= target else f"not met (needs {target:g}x)"
    pair = f"{LABELS[fast['model']]} {fast['precision']} vs {LABELS[slow['model']]} {slow['precision']}"
    return f"- {name}: {wall:.2f}x wall ({cpu:.2f}x CPU time), {pair}: {verdict}"


def goals_report(rows: list[dict], flags: set[str], threads: int) -> list[str]:
    """The ratios the CPU-speed issue sets as goals, at 10 s, computed from this run's rows (wall time decides)."""
    ast_fp32 = {batch: find(rows, "ast", ("fp32",), 10, batch, threads) for batch in (1, 8)}
    small_fp32 = {batch: find(rows, "small", ("fp32",), 10, batch, threads) for batch in (1, 8)}
    lines = [f"Goals ({threads} threads, 10 s of audio; a report on this run, not a test):"]
    lines.append(goal_line(
        "1a fp32, batch 1: DASS-small at least 10x faster than AST fp32", 10, small_fp32[1], ast_fp32[1],
        "ast and small in fp32 at 10 s batch 1",
    ))  # fmt: skip
    lines.append(goal_line(
        "1b fp32, batch 8: DASS-small at least 10x AST fp32's throughput", 10, small_fp32[8], ast_fp32[8],
        "ast and small in fp32 at 10 s batch 8",
    ))  # fmt: skip
    bf16_cpu = any(flag in flags for flag in BF16_FLAGS)
    scope = "" if bf16_cpu else " [no AVX512-BF16/AMX on this CPU: the goal does not apply here; ratio for information]"
    small_best = find(rows, "small", PRECISIONS, 10, 1, threads)
    lines.append(goal_line(
        f"2a bf16 CPU: DASS-small (best precision) in at most 1/25 of AST fp32's time{scope}", 25, small_best,
        ast_fp32[1], "ast fp32 and any small case at 10 s batch 1",
    ))  # fmt: skip
    bf16 = ("bf16", "bf16-autocast")
    lines.append(goal_line(
        f"2b bf16 CPU: DASS-small at least 6x faster than AST in bf16, best against best{scope}", 6,
        find(rows, "small", bf16, 10, 1, threads), find(rows, "ast", bf16, 10, 1, threads),
        "ast and small in bf16 or bf16-autocast at 10 s batch 1",
    ))  # fmt: skip
    lines.append(goal_line(
        f"2b' the same under the same autocast (bf16-autocast both){scope}", 6,
        find(rows, "small", ("bf16-autocast",), 10, 1, threads), find(rows, "ast", ("bf16-autocast",), 10, 1, threads),
        "ast and small in bf16-autocast at 10 s batch 1",
    ))  # fmt: skip
    return lines


def report(rows: list[dict], notes: list[str], header: list[str], threads: list[int], command: str) -> list[str]:
    lines = [*header, f"command: {command}", "", *markdown_table(rows), ""]
    lines += [f"{note}" for note in notes]
    lines += [
        "runs: timed forwards after one warm-up (median shown); 1w = the warm-up alone exceeded --budget and is the "
        "measurement. vs AST fp32 = AST fp32's time / this row's time at the same audio length, batch and threads.",
        "AST rule: skipped when its estimated memory exceeds 80 % of MemAvailable or its estimated time (flops at "
        "the fp32 rate AST reached earlier in this run, or before that an assumed "
        f"{ASSUMED_FLOPS_PER_THREAD / 1e9:g} GFLOP/s per thread) exceeds --max-case-seconds.",
        "",
    ]
    flags = cpu_flags()
    for count in threads:
        if any(row["seconds"] == 10 and row["threads"] == count for row in rows):  # the goals are set at 10 s
            lines += [*goals_report(rows, flags, count), ""]
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument(
        "--precisions", nargs="+", choices=PRECISIONS,
        help="Precisions for every model (each runs those it supports); default: all for DASS, fp32/bf16/int8 "
        "for AST, fp32 for CNN14.",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, nargs="+", default=[10, 60], help="Audio lengths (600: see above).")
    parser.add_argument(
        "--batch", type=int, nargs="+", default=[1, 8], help="Batch sizes up to 10 s; longer inputs run at batch 1."
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    parser.add_argument("--repeats", type=int, default=5, help="Most timed forwards per case (after one warm-up).")
    parser.add_argument("--budget", type=float, default=10.0, help="Seconds of timed forwards per case, about.")
    parser.add_argument("--max-case-seconds", type=float, default=300.0, help="AST's estimated forward limit.")
    parser.add_argument("--case-timeout", type=float, default=900.0, help="Seconds before a case is abandoned.")
    parser.add_argument("--quick", action="store_true", help="10 s, batch 1, 2 repeats: a first look in ~2 min.")
    parser.add_argument("--tiny", action="store_true", help="Toy model sizes: checks the command, times nothing real.")
    parser.add_argument("--json", help="Also write the rows and the report to this JSON file.")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--export", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.batch, args.repeats, args.budget = [10], [1], 2, 5.0
    return args


def main() -> None:
    args = parse_args()
    if args.case or args.export:
        child_main("case" if args.case else "export", json.loads(args.case or args.export))
        return
    header = machine_lines(args.threads)
    print("\n".join(header), flush=True)
    cases = plan(args)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dass-bench-") as workdir:
        rows, notes = run_all(args, cases, workdir)
    command = " ".join(["python", *sys.argv])
    lines = report(rows, notes, header, args.threads, command)
    lines.append(f"total run time: {time.perf_counter() - start:.0f} s")
    print("\n" + "\n".join(lines[len(header) :]), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"machine": header, "rows": rows, "report": lines}, handle, indent=1)


if __name__ == "__main__":
    main()
