"""CPU speed side by side: AST, PANNs CNN14 and DASS in each precision (and DASS on ONNX Runtime), in one run.

From the repository root:

    OMP_WAIT_POLICY=PASSIVE python -m scripts.bench                      # 10 s (batch 1, 8) and 60 s
    OMP_WAIT_POLICY=PASSIVE python -m scripts.bench --seconds 600        # the 10-minute inputs alone
    python -m scripts.bench --quick                                      # 10 s, batch 1, few repeats
    python -m scripts.bench --models ast small --precisions fp32 bf16-autocast --seconds 10 --batch 1 8
    python -m scripts.bench --interleave --models ast small --precisions fp32 fp32-aten bf16 bf16-autocast int8
    python -m scripts.bench --models small --precisions fp32 onnx --onnx-dir /tmp --seconds 10 60 600

Prints the machine (CPU model, its ISA flags, torch and ONNX Runtime versions, threads, what `--dtype auto` picks
here), then a markdown table with one row per case: median wall time and process CPU time (user + system, all
threads: less disturbed than wall time when other jobs share the cores) per forward, clips per second, the case's
peak RSS, and the speed-up over AST fp32 and over AST in the row's own precision at the same audio length, batch
and threads, measured in the same run (AST's time / case time, from wall and from CPU time). Where DASS ran both in
fp32 and on ONNX Runtime, a second table compares the two (time ratios, largest logit difference: same weights,
same inputs). Then the goals block of the CPU-speed issue, with the ratios it asks for and whether this run meets
them. It is a report, not a test: the numbers are only as good as the machine's quiet.

Cases (each in its own subprocess, so that its peak RSS, which includes ~0.3 GB of Python + torch, is its own):
  models      ast (transformers' ASTForAudioClassification(ASTConfig(max_length=frames)), sdpa attention),
              cnn14 (panns_inference's Cnn14 at 32 kHz, fed the waveform: its STFT + log-mel front-end is inside
              the timed forward, unlike the others, which take features), small, medium (DASS, compiled CPU scan
              when built, otherwise the reference scan, named in the note column; every setting "auto", as users
              call it: the lean path from config.lean_threshold_frames frames).
  precisions  fp32; bf16 (parameters and inputs cast to bfloat16; DASS keeps its scan parameters and head in
              fp32); bf16-autocast (fp32 weights under torch.autocast("cpu", bfloat16)); int8 (dynamic
              quantisation of the linears: int8 weights, activations quantised per call); onnx (DASS only:
              fp32 graph from transformers_dass.inference.onnx_export run by ONNX Runtime with intra-op threads =
              --threads, exported once per model in its own process before its cases, or reused from
              --onnx-dir; above 60 s only when --precisions names it, since ONNX Runtime has no lean path: past
              18 GB at 600 s); fp32-aten (DASS only, only when --precisions names it: fp32 with the block linears
              through ATen, MKL sgemm, instead of oneDNN: the state before transformers_dass.model.fused_linear, for
              comparison); int8-dynamic and int8-torchao (DASS only, only when named: the two int8 routes of
              transformers_dass.inference.int8, torch.ao's quantize_dynamic and torchao's quantize_, side by side).
              bf16 and int8 are transformers_dass.inference.precision.apply_precision's formats, for every model.
  lengths     --seconds of audio: 10 s = 1024 frames (AST's input; both feature extractors pad 10 s to it),
              otherwise the kaldi frame count of that many seconds at 16 kHz (60 s = 5998 frames); CNN14 gets
              seconds x 32000 samples. Random weights and inputs (speed does not depend on them), seeded: every
              case of a model, and its ONNX export, have the same weights, and every case of a size the same inputs.
Timing: one warm-up forward, then up to --repeats timed ones while they fit in --budget seconds; when the warm-up
alone exceeds the budget, it is the one measurement (runs "1w": includes first-call costs, which are small next
to a forward that long). AST is not run where its estimated cost is out of reach (see `ast_estimate`): the row
says "skipped" with the estimate and the rule. A case that fails or is missing a package says so in its row.
--interleave: the cases of each length, batch and thread count are built together in one process and timed in
interleaved rounds (one warm-up round, then exactly --repeats rounds, --budget aside), so that a change in the
machine's load hits all of them alike: for a machine shared with other jobs. Their peak RSS is the group's, not
shown ("-").
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch

from .machine import BF16_FLAGS, available_memory_bytes, cpu_flags, machine_lines, peak_rss_mb
from .timing import timed_rounds, timed_runs

MODELS = ("ast", "cnn14", "small", "medium")
DASS = ("small", "medium")
PRECISIONS = ("fp32", "bf16", "bf16-autocast", "int8", "onnx")  # the formats users run
# Every --precisions choice in report order: the formats and fp32-aten, DASS fp32 as it ran before its oneDNN linears,
# and the two int8 routes by name (int8 is the library's default route; int8-dynamic: torch.ao's quantize_dynamic,
# int8-torchao: torchao's quantize_ with Int8DynamicActivationInt8WeightConfig).
CHOICES = ("fp32", "fp32-aten", "bf16", "bf16-autocast", "int8", "int8-dynamic", "int8-torchao", "onnx")
INT8_ROUTE = {"int8-dynamic": "dynamic", "int8-torchao": "torchao"}
LABELS = {"ast": "AST", "cnn14": "PANNs CNN14", "small": "DASS-small", "medium": "DASS-medium"}
# What a full run measures of each model when --precisions is not given: CNN14 is a reference point in fp32.
DEFAULT_PRECISIONS = {
    "ast": ("fp32", "bf16", "bf16-autocast", "int8"),
    "cnn14": ("fp32",),
    "small": PRECISIONS,
    "medium": PRECISIONS,
}
SUPPORTED = {"ast": PRECISIONS[:4], "cnn14": PRECISIONS[:4], "small": CHOICES, "medium": CHOICES}
INSTALL_HINT = 'pip install "transformers-dass[bench]"'
# Precision names of this benchmark -> choices of transformers_dass.inference.precision.apply_precision.
LIBRARY_PRECISION = {"fp32": "float32", "bf16": "bfloat16", "int8": "int8"}
AST_MAX_MEMORY_FRACTION = 0.8  # of MemAvailable: what an AST case may be estimated to need before it is skipped
ASSUMED_FLOPS_PER_THREAD = 200e9  # AST's time estimate before it is measured: 2x what a Zen 5 core reached in fp32
CNN14_SAMPLE_RATE = 32000
ONNX_DEFAULT_MAX_SECONDS = 60  # longer ONNX cases only when asked for (BENCHMARKS.md: >18 GB at 600 s)
# The folder `python -m <this package>` runs from, for the child processes: the repository root.
PACKAGE_ROOT = Path(__file__).resolve().parents[__package__.count(".") + 1]


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


def dtype_auto_line() -> str:
    from transformers_dass.inference.precision import resolve_dtype

    return f"--dtype auto here: {resolve_dtype('auto')[1]}"


# ---------------------------------------------------------------------------------------------------------------
# Models, precisions, inputs (child process)


def tiny_dass_config(name: str):
    from transformers_dass import DassConfig

    return DassConfig(dims=[8, 16], depths=[1, 1 if name == "small" else 2], drop_path_rate=0.0)


def build_model(model: str, frames: int, tiny: bool = False, scan_backend: str | None = None) -> torch.nn.Module:
    """The fp32 model of a case, in eval mode. `tiny`: toy sizes that only check the command runs. `scan_backend`:
    DASS's config.scan_backend (default: the config's, "auto")."""
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
    if scan_backend is not None:
        config.scan_backend = scan_backend
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
    the linears dynamically, int8 weights with per-channel scales). bf16-autocast and fp32-aten leave the model in
    fp32 and are applied around the call (`precision_context`)."""
    if precision in ("bf16-autocast", "fp32-aten"):
        return model
    from transformers_dass.inference.precision import apply_precision as library_apply

    if precision in INT8_ROUTE:
        return library_apply(model, "int8", int8_route=INT8_ROUTE[precision])
    return library_apply(model, LIBRARY_PRECISION[precision])


@contextlib.contextmanager
def aten_linears():
    """DASS's block linears through ATen (MKL sgemm in fp32) instead of oneDNN: the state before fused_linear.py."""
    from transformers_dass.model import fused_linear

    original = fused_linear._takes_onednn
    fused_linear._takes_onednn = lambda *args: False
    try:
        yield
    finally:
        fused_linear._takes_onednn = original


def precision_context(precision: str):
    """What a case's forward runs under: autocast for bf16-autocast, ATen linears for fp32-aten, else nothing."""
    if precision == "bf16-autocast":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    if precision == "fp32-aten":
        return aten_linears()
    return contextlib.nullcontext()


def make_inputs(model: str, case_frames: int, seconds: float, batch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)  # the same inputs for every case of a size (ONNX's logit check)
    if model == "cnn14":
        return 0.1 * torch.randn(batch, round(seconds * CNN14_SAMPLE_RATE), generator=generator)
    return torch.randn(batch, case_frames, 128, generator=generator)


# ---------------------------------------------------------------------------------------------------------------
# Cases (child process)


def torch_call(model: torch.nn.Module, inputs: torch.Tensor, precision: str) -> Callable[[], object]:
    def call():
        with torch.inference_mode(), precision_context(precision):
            return model(inputs)

    return call


def dass_note(model: torch.nn.Module, inputs: torch.Tensor) -> str:
    from transformers_dass.ops import resolve_backend

    backend = resolve_backend(model.config.scan_backend, "cpu")
    with torch.inference_mode():
        lean = model.dass._use_lean_path(inputs, None)
    return f"{backend} scan, {'lean' if lean else 'standard'} path"


def prepare_case(spec: dict) -> tuple[Callable[[], object], str]:
    """Build one case in this process: (the forward to time, the note of its row)."""
    model_name, precision = spec["model"], spec["precision"]
    frames = input_frames(spec["seconds"])
    inputs = make_inputs(model_name, frames, spec["seconds"], spec["batch"])
    if precision == "onnx":
        return onnx_call(spec["onnx_path"], inputs, spec["threads"]), "ONNX Runtime, CPU provider"
    if precision == "fp32-aten" and importlib.util.find_spec("transformers_dass.model.fused_linear") is None:
        raise Unavailable("this install has no transformers_dass.model.fused_linear (its linears are ATen's already)")
    torch.manual_seed(0)  # the same weights for every case of a model, and for its ONNX export
    model = build_model(model_name, frames, spec["tiny"])
    note = dass_note(model, inputs) if model_name in DASS else ""
    model = apply_precision(model, precision)
    if precision == "bf16" and model_name not in DASS:
        inputs = inputs.to(torch.bfloat16)  # DASS casts its input to its weights' dtype itself
    return torch_call(model, inputs, precision), note


def case_result(spec: dict, timing: dict, note: str, peak_mb: float | None) -> dict:
    """A timed case's JSON-able result; DASS's fp32 and ONNX cases keep their logits for the ONNX comparison."""
    output = timing.pop("output")
    result = {**timing, "peak_mb": peak_mb, "note": note}
    if spec["model"] in DASS and spec["precision"] == "fp32":
        result["logits"] = output.logits.float().tolist()
    elif spec["precision"] == "onnx":
        result["logits"] = output[0].tolist()
    return result


def run_case(spec: dict) -> dict:
    """Child process: build, time and measure one case; returns the JSON-able result."""
    torch.set_num_threads(spec["threads"])
    call, note = prepare_case(spec)
    timing = timed_runs(call, spec["repeats"], spec["budget"])
    return case_result(spec, timing, note, peak_rss_mb())


def run_group(specs: list[dict]) -> list[dict]:
    """Child process of --interleave: build the cases of one length, batch and thread count, then time them in
    interleaved rounds (exactly `repeats`); one result per spec. A case this install cannot run says so in its
    result; the others still run."""
    torch.set_num_threads(specs[0]["threads"])
    results, ready = {}, []
    for index, spec in enumerate(specs):
        try:
            ready.append((index, spec, *prepare_case(spec)))
        except Unavailable as error:
            results[index] = {"status": "not available", "reason": str(error)}
    timings = timed_rounds([call for _, _, call, _ in ready], specs[0]["repeats"]) if ready else []
    for (index, spec, _, note), timing in zip(ready, timings):
        results[index] = {"status": "ok", **case_result(spec, timing, note, peak_mb=None)}
    return [results[index] for index in range(len(specs))]


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
    torch.manual_seed(0)  # the weights of the model's PyTorch cases (prepare_case)
    model = build_model(spec["model"], 1024, spec["tiny"])
    start = time.perf_counter()
    export_onnx(model, spec["onnx_path"])
    size_mb = os.path.getsize(spec["onnx_path"]) / 2**20
    return {"export_s": time.perf_counter() - start, "size_mb": size_mb, "peak_mb": peak_rss_mb()}


def onnx_call(path: str, inputs: torch.Tensor, threads: int) -> Callable[[], object]:
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
    """Run `mode` ("case", "group" or "export") for `spec` in a subprocess; a result dict with "status"."""
    command = [sys.executable, "-m", __package__, f"--{mode}", json.dumps(spec)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=args.case_timeout, check=False, cwd=PACKAGE_ROOT
        )
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


CHILD_MODES = {  # what a child process runs: --case, --group or --export with its JSON spec
    "case": run_case,
    "group": lambda spec: {"results": run_group(spec["cases"])},
    "export": export_onnx_model,
}


def child_main(mode: str, spec: dict) -> None:
    try:
        result = {"status": "ok", **CHILD_MODES[mode](spec)}
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
                    for precision in CHOICES:
                        if precision in wanted and precision in SUPPORTED[model]:
                            cases.append(Case(model, precision, seconds, batch, threads))
    baseline_first = lambda case: (case.model, case.precision) != ("ast", "fp32")  # noqa: E731
    cases.sort(key=lambda case: (case.threads, case.seconds, case.batch, baseline_first(case)))
    return cases


def skip_result(args: argparse.Namespace, case: Case, ast_rate: float | None) -> dict | None:
    """The row of a case this run does not attempt (AST out of reach, ONNX above 60 s unasked), or None."""
    reason = None
    if case.model == "ast":
        reason = ast_skip_reason(case.frames, case.batch, case.threads, ast_rate, args.max_case_seconds, args.tiny)
    if case.precision == "onnx" and case.seconds > ONNX_DEFAULT_MAX_SECONDS and not args.precisions:
        reason = (
            f"ONNX Runtime runs the standard forward (no lean path), past 18 GB at 600 s; "
            f"--precisions onnx runs it above {ONNX_DEFAULT_MAX_SECONDS} s"
        )
    return None if reason is None else {"status": "skipped", "reason": reason}


def time_cases(args: argparse.Namespace, specs: list[dict]) -> list[dict]:
    """Results of `specs`: each in its own process, or with --interleave all of them in one."""
    if not specs:
        return []
    if not args.interleave:
        return [run_child(args, "case", spec) for spec in specs]
    group = run_child(args, "group", {"cases": specs})
    return group["results"] if group["status"] == "ok" else [dict(group) for _ in specs]


def run_all(args: argparse.Namespace, cases: list[Case], workdir: str) -> tuple[list[dict], list[str]]:
    """Run every case in its own process (with --interleave: the cases of each length, batch and thread count
    together in one); returns one result row per case, in plan order, and notes (ONNX exports)."""
    rows, notes, exports = [], [], {}
    ast_rate: dict[int, float] = {}  # threads -> AST fp32 flops per second measured so far
    groups: dict[tuple, list[Case]] = {}
    for index, case in enumerate(cases):
        groups.setdefault((case.threads, case.seconds, case.batch) if args.interleave else (index,), []).append(case)
    for group in groups.values():
        ready = []  # (row, spec) of the cases to time
        for case in group:
            row = {**dataclasses.asdict(case), "frames": case.frames}
            spec = {**row, "repeats": args.repeats, "budget": args.budget, "tiny": args.tiny}
            result = skip_result(args, case, ast_rate.get(case.threads))
            if result is None and case.precision == "onnx":
                result = prepare_onnx(args, case, spec, workdir, exports, notes)
            if result is None:
                ready.append((row, spec))
            else:
                row.update(result)
            rows.append(row)
        for (row, _), result in zip(ready, time_cases(args, [spec for _, spec in ready])):
            row.update(result)
        for index, case, row in zip(range(len(rows) - len(group) + 1, len(rows) + 1), group, rows[-len(group) :]):
            if case.model == "ast" and case.precision == "fp32" and row["status"] == "ok":
                ast_rate[case.threads] = ast_estimate(case.frames, case.batch, args.tiny)["flops"] / row["wall"]
            ok = row["status"] == "ok"
            outcome = f"{row['wall']:.3f} s wall, {row['cpu']:.3f} s CPU" if ok else f"{row['status']}: {row['reason']}"
            print(f"[{index}/{len(cases)}] {case.label}: {outcome}", file=sys.stderr, flush=True)
    compare_logits(rows)
    return rows, notes


def prepare_onnx(args, case: Case, spec: dict, workdir: str, exports: dict, notes: list[str]) -> dict | None:
    """Export the case's model to ONNX once per run (in its own process; with --onnx-dir, a graph already there is
    reused) and point spec["onnx_path"] at it. Returns the case's row when it cannot run, else None."""
    missing = onnxruntime_missing()
    if missing:
        return {"status": "not available", "reason": missing}
    if case.model not in exports:
        folder = args.onnx_dir or workdir
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"dass-{case.model}{'-tiny' if args.tiny else ''}.onnx")
        if os.path.exists(path):
            export = {"status": "ok"}
            notes.append(f"ONNX graph of {LABELS[case.model]}: {path}, reused (--onnx-dir)")
        else:
            export = run_child(args, "export", {**spec, "onnx_path": path})
            if export["status"] == "ok":
                notes.append(
                    f"ONNX export of {LABELS[case.model]} ({case.threads} threads): {export['export_s']:.1f} s, "
                    f"{export['size_mb']:.0f} MB file, peak RSS {export['peak_mb']:.0f} MB"
                )
        exports[case.model] = (path, export)
    path, export = exports[case.model]
    if export["status"] != "ok":
        return {"status": export["status"], "reason": f"export: {export['reason']}"}
    spec["onnx_path"] = path
    return None


def onnx_case(args, case: Case, spec: dict, workdir: str, exports: dict, notes: list[str]) -> dict:
    """The ONNX Runtime case on its own: the graph (exported or reused), then the session timed in another process."""
    return prepare_onnx(args, case, spec, workdir, exports, notes) or run_child(args, "case", spec)


def compare_logits(rows: list[dict]) -> None:
    """Give each ONNX row its largest |logit difference| from DASS fp32 in PyTorch at the same size (same weights,
    same inputs), and drop the logits the rows carried."""
    size = lambda row: (row["model"], row["seconds"], row["batch"], row["threads"])  # noqa: E731
    expected = {size(row): row.pop("logits") for row in rows if row["precision"] == "fp32" and "logits" in row}
    for row in rows:
        if "logits" in row:
            got = torch.tensor(row.pop("logits"))
            if size(row) in expected:
                row["max_abs_diff"] = float((got - torch.tensor(expected[size(row)])).abs().max())


# ---------------------------------------------------------------------------------------------------------------
# Report


def baseline(rows: list[dict], row: dict, precision: str = "fp32") -> dict | None:
    """AST in `precision` at the row's length, batch and threads, measured in this run, or None."""
    for other in rows:
        same = all(other[key] == row[key] for key in ("seconds", "batch", "threads"))
        if same and other["model"] == "ast" and other["precision"] == precision and other["status"] == "ok":
            return other
    return None


def speedups(rows: list[dict], row: dict, precision: str = "fp32") -> tuple[float, float] | None:
    """(wall, CPU) speed-up of `row` over AST in `precision` at its size: AST's time / the row's time (>1 = faster)."""
    base = baseline(rows, row, precision)
    if base is None or row["status"] != "ok":
        return None
    return base["wall"] / row["wall"], base["cpu"] / row["cpu"]


def ratio_cells(ratio: tuple[float, float] | None) -> str:
    return " | ".join(f"{r:.2f}x" for r in ratio) if ratio else "- | -"


def markdown_table(rows: list[dict]) -> list[str]:
    lines = [
        "| model | precision | audio | batch | threads | runs | wall (s) | CPU (s) | clips/s | peak RSS (MB) "
        "| vs AST fp32 (wall) | vs AST fp32 (CPU) | vs AST same precision (wall) | vs AST same precision (CPU) "
        "| note |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        audio = f"{row['seconds']:g} s"
        head = f"| {LABELS[row['model']]} | {row['precision']} | {audio} | {row['batch']} | {row['threads']} |"
        if row["status"] != "ok":
            lines.append(f"{head} | | | | | | | | | {row['status']}: {row['reason']} |")
            continue
        runs = "1w" if row["warmup_only"] else str(row["runs"])
        peak = "-" if row["peak_mb"] is None else f"{row['peak_mb']:.0f}"
        lines.append(
            f"{head} {runs} | {row['wall']:.3f} | {row['cpu']:.3f} | {row['batch'] / row['wall']:.2f} | {peak} | "
            f"{ratio_cells(speedups(rows, row))} | {ratio_cells(speedups(rows, row, row['precision']))} | "
            f"{row['note']} |"
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


def onnx_table(rows: list[dict]) -> list[str]:
    """ONNX Runtime against PyTorch fp32 for each DASS model and size that ran both in this run."""
    lines = []
    for ort in rows:
        pt = find(rows, ort["model"], ("fp32",), ort["seconds"], ort["batch"], ort["threads"])
        if ort["precision"] != "onnx" or ort["status"] != "ok" or pt is None:
            continue
        diff = f"{ort['max_abs_diff']:.1e}" if "max_abs_diff" in ort else "-"
        lines.append(
            f"| {LABELS[ort['model']]} | {ort['seconds']:g} s | {ort['batch']} | {ort['threads']} | {pt['wall']:.3f} "
            f"| {ort['wall']:.3f} | {ort['wall'] / pt['wall']:.2f} | {pt['cpu']:.3f} | {ort['cpu']:.3f} "
            f"| {ort['cpu'] / pt['cpu']:.2f} | {diff} |"
        )
    if not lines:
        return []
    return [
        "ONNX Runtime against PyTorch (DASS fp32, same weights and inputs; ORT / PyTorch < 1: ONNX Runtime faster):",
        "",
        "| model | audio | batch | threads | PyTorch wall (s) | ORT wall (s) | ORT / PyTorch wall | PyTorch CPU (s) "
        "| ORT CPU (s) | ORT / PyTorch CPU | max \\|logit diff\\| |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *lines,
        "",
    ]


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


def report(
    rows: list[dict], notes: list[str], header: list[str], threads: list[int], command: str, interleave: bool = False
) -> list[str]:
    lines = [*header, f"command: {command}", "", *markdown_table(rows), "", *onnx_table(rows)]
    lines += [f"{note}" for note in notes]
    lines += [
        "runs: timed forwards after one warm-up (median shown); 1w = the warm-up alone exceeded --budget and is the "
        "measurement. vs AST fp32 / vs AST same precision = AST's time in fp32 / in the row's precision, divided by "
        "this row's time, at the same audio length, batch and threads.",
        "AST rule: skipped when its estimated memory exceeds 80 % of MemAvailable or its estimated time (flops at "
        "the fp32 rate AST reached earlier in this run, or before that an assumed "
        f"{ASSUMED_FLOPS_PER_THREAD / 1e9:g} GFLOP/s per thread) exceeds --max-case-seconds.",
        "",
    ]
    if interleave:
        lines[-1:-1] = [
            "--interleave: the cases of each length, batch and thread count ran in one process, timed in interleaved "
            "rounds (--repeats of them); peak RSS is that process's, not a case's (\"-\")."
        ]
    flags = cpu_flags()
    for count in threads:
        if any(row["seconds"] == 10 and row["threads"] == count for row in rows):  # the goals are set at 10 s
            lines += [*goals_report(rows, flags, count), ""]
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m {__package__}", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument(
        "--precisions", nargs="+", choices=CHOICES,
        help="Precisions for every model (each runs those it supports); default: fp32/bf16/bf16-autocast/int8/onnx "
        "for DASS, fp32/bf16/bf16-autocast/int8 for AST, fp32 for CNN14 (fp32-aten only when named).",
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
    parser.add_argument(
        "--interleave", action="store_true",
        help="Time the cases of each length, batch and thread count together in one process, in interleaved rounds "
        "(exactly --repeats; --budget does not apply): steadier ratios on a machine shared with other jobs.",
    )  # fmt: skip
    parser.add_argument(
        "--onnx-dir", help="Keep the exported ONNX graphs here (dass-small.onnx, dass-medium.onnx) and reuse those "
        "that exist instead of exporting again (default: a temporary folder, exported every run).",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="10 s, batch 1, 2 repeats: a first look in ~2 min.")
    parser.add_argument("--tiny", action="store_true", help="Toy model sizes: checks the command, times nothing real.")
    parser.add_argument("--json", help="Also write the rows and the report to this JSON file.")
    for mode in CHILD_MODES:
        parser.add_argument(f"--{mode}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.batch, args.repeats, args.budget = [10], [1], 2, 5.0
    return args


def main() -> None:
    args = parse_args()
    for mode in CHILD_MODES:
        if getattr(args, mode):
            child_main(mode, json.loads(getattr(args, mode)))
            return
    header = [*machine_lines(args.threads), dtype_auto_line()]
    print("\n".join(header), flush=True)
    cases = plan(args)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dass-bench-") as workdir:
        rows, notes = run_all(args, cases, workdir)
    command = " ".join(["python", "-m", __package__, *sys.argv[1:]])
    lines = report(rows, notes, header, args.threads, command, args.interleave)
    lines.append(f"total run time: {time.perf_counter() - start:.0f} s")
    print("\n" + "\n".join(lines[len(header) :]), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"machine": header, "rows": rows, "report": lines}, handle, indent=1)


if __name__ == "__main__":
    main()
