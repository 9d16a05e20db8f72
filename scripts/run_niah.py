#!/usr/bin/env python
"""Audio Needle In A Haystack (NIAH) sweep: mAP of audio taggers against haystack duration.

Each labelled clip of a dataset (the needle, cut or padded to 1024 frames = 10 s) is placed at a relative position
in a haystack of each length (`transformers_dass.niah.make_haystack`), every model tags the whole haystack, and
mAP / mAUC / d' are measured against the needles' labels (`transformers_dass.metrics.compute_niah_metrics`).

    python scripts/run_niah.py --models dass=dass-small ast=MIT/ast-finetuned-audioset-10-10-0.4593 \
        --dataset_name agkphysics/AudioSet --dataset_config_name balanced --split test --max_needles 2000 \
        --lengths_seconds 10 50 250 1000 9000 --positions 0 0.5 1 --noise zeros --output_dir niah-out

Models: `name=path` (or only a path; the folder name is then the name), a DASS folder or Hub id, or an
Audio Spectrogram Transformer (`ASTForAudioClassification`). All must score the same labels (`--labels_csv`
gives the vocabulary, else the first model's config).

Data: `--dataset_name` (Hub, e.g. agkphysics/AudioSet, streamed), `--data_files` (parquet shards in the AudioSet
schema, e.g. those of scripts/precompute_teacher_logits.py), or `--audio_dir` with `--labels_file`, a CSV with
columns `file` (path relative to the folder) and `labels` (mids or display names joined by `--labels_separator`).
Audio is read with soundfile and resampled to 16 kHz by the package. Clips that cannot be decoded, are
digital silence, or have only labels outside the vocabulary are skipped and counted (`skipped_needles`).

Haystacks: `--noise zeros` (zeros in the normalised feature space, the authors' default), `white`, or a noise
file (e.g. babble) at each `--snr_db` against the needle's RMS. `--haystack_level features` splices the needle's
features between noise frames (the authors' method); `waveform` adds the needle waveform into the noise and
computes the features of the mixture. Haystacks are built one needle at a time. `--batch_size` needles go
through a model together at 10 s; a longer haystack uses `batch_size * needle frames / haystack frames` of them
(at least 1), so a batch holds about the same number of frames.

AST with long inputs: AST has a learned position-embedding table for its training length (12 x 101 patches for
1024 frames). For a haystack of N frames the table is rebuilt for (N - 16) // 10 + 1 patch columns with
`transformers_dass.niah.ast_position_embeddings` from the model's own 10 s table:
`--ast_position_embeddings interpolate` (default) resizes the patch grid along time by linear interpolation
(frequency rows unchanged, CLS and distillation token embeddings kept), as the authors' AST code does when it
loads the 10 s AudioSet model for a longer input; `sinusoidal` replaces the table with a 1-D sinusoidal one, as
the authors' run_NIAH.py does for an AST trained with sinusoidal embeddings. DASS needs nothing: it has no
positional embedding.

Outputs in `--output_dir`: results.json (run settings and one record per point), results.csv (the same records)
and niah.png (mAP against haystack duration, log axis, one line per model and noise setting, mean over positions;
needs matplotlib, else skipped with a warning). A point is (model, haystack seconds, position, noise, SNR, haystack
level); rerunning with the same output folder skips the points already there. A point that runs out of memory
is recorded with status "oom" (retried only with `--retry_oom`) and the sweep goes on. On CPU the operating
system may kill the process before Python sees an out-of-memory error.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import gc
import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification, HfArgumentParser

from transformers_dass import DassFeatureExtractor
from transformers_dass.audio_io import load_audio
from transformers_dass.data import (
    AudioDecodeError,
    LabelEncoder,
    SkipCounter,
    class_label_names,
    decode_audio,
    load_audio_dataset,
)
from transformers_dass.metrics import compute_niah_metrics
from transformers_dass.niah import (
    DEFAULT_MEAN,
    DEFAULT_STD,
    ast_position_embeddings,
    haystack_features,
    haystack_frames,
    haystack_samples,
    make_haystack,
    make_haystack_waveform,
)

logger = logging.getLogger(__name__)

SAMPLING_RATE = 16000
AST_MODEL_TYPE = "audio-spectrogram-transformer"
CSV_COLUMNS = [
    "model",
    "model_path",
    "haystack_seconds",
    "haystack_frames",
    "needle_position",
    "noise",
    "snr_db",
    "haystack_level",
    "status",
    "mAP",
    "mAUC",
    "d_prime",
    "num_needles",
    "skipped_needles",
    "skipped_classes",
    "batch_size",
    "elapsed_s",
    "device",
    "error",
    "finished_at",
]
# Settings every point of one output folder must share; a rerun that changes them needs a new folder.
RUN_SETTINGS = (
    "dataset",
    "max_needles",
    "seed",
    "needle_frames",
    "ast_position_embeddings",
    "autocast",
    "labels",
)


@dataclass
class NiahArguments:
    models: list[str] = field(metadata={"help": "Models as name=path (DASS or AST folders / Hub ids)."})
    output_dir: str = field(metadata={"help": "Where results.json, results.csv and niah.png go."})
    lengths_seconds: list[float] = field(
        default_factory=lambda: [10.0, 50.0, 250.0, 1000.0, 9000.0],
        metadata={"help": "Haystack lengths in seconds (1024 frames = 10 s), each at least the needle's."},
    )
    positions: list[float] = field(
        default_factory=lambda: [0.0, 0.5, 1.0], metadata={"help": "Relative needle positions in [0, 1]."}
    )
    noise: list[str] = field(
        default_factory=lambda: ["zeros"], metadata={"help": "Haystack kinds: zeros, white, or noise file paths."}
    )
    snr_db: list[float] = field(
        default_factory=lambda: [10.0], metadata={"help": "Needle-to-noise ratios in dB (not used for zeros)."}
    )
    haystack_level: str = field(
        default="features",
        metadata={"help": "features: splice needle features between noise frames; waveform: mix the audio.",
                  "choices": ["features", "waveform"]},
    )
    seed: int = field(default=0, metadata={"help": "Noise seed; needle i uses (seed, i)."})
    batch_size: int = field(default=8, metadata={"help": "Needles per model call at 10 s (fewer when longer)."})
    max_needles: int | None = field(default=None, metadata={"help": "Use only the first N usable clips."})
    needle_frames: int = field(default=1024, metadata={"help": "Needle length in frames (pad or cut)."})
    device: str | None = field(default=None, metadata={"help": "cuda, cpu, cuda:1, ... (default: cuda if any)."})
    autocast: str = field(
        default="none",
        metadata={"help": "Run the models under torch.autocast with this dtype.",
                  "choices": ["none", "float16", "bfloat16"]},
    )
    ast_position_embeddings: str = field(
        default="interpolate",
        metadata={"help": "How AST's position embeddings reach long inputs.",
                  "choices": ["interpolate", "sinusoidal"]},
    )
    retry_oom: bool = field(default=False, metadata={"help": "Rerun points recorded as out of memory."})
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bars."})
    # data
    dataset_name: str | None = field(default=None, metadata={"help": "Hub dataset, e.g. agkphysics/AudioSet."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "e.g. balanced."})
    split: str = field(default="test", metadata={"help": "Split of --dataset_name (AudioSet eval: test)."})
    data_files: list[str] | None = field(default=None, metadata={"help": "Parquet shards (globs), AudioSet schema."})
    audio_dir: str | None = field(default=None, metadata={"help": "A folder of audio files (with --labels_file)."})
    labels_file: str | None = field(default=None, metadata={"help": "CSV with columns file, labels."})
    labels_separator: str = field(default=";", metadata={"help": "Separator of the labels in --labels_file."})
    streaming: bool = field(default=True, metadata={"help": "Stream --dataset_name instead of downloading it."})
    audio_column: str = field(default="audio")
    label_column: str = field(default="labels")
    labels_csv: str | None = field(
        default=None, metadata={"help": "AudioSet index,mid,display_name CSV: the label vocabulary."}
    )
    cache_dir: str | None = field(default=None)
    token: str | None = field(default=None)


@dataclass
class Point:
    model: str
    haystack_seconds: float
    needle_position: float
    noise: str
    snr_db: float | None
    haystack_level: str

    @property
    def key(self) -> tuple:
        return (self.model, self.haystack_seconds, self.needle_position, self.noise, self.snr_db, self.haystack_level)


@dataclass
class LoadedModel:
    name: str
    path: str
    model: torch.nn.Module
    is_ast: bool
    mean: float
    std: float
    num_mel_bins: int
    ast_table: torch.Tensor | None = None  # AST's position embeddings at its training length (CPU)


@dataclass
class Needle:
    index: int
    waveform: np.ndarray
    target: np.ndarray


# ----------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------


def parse_model_specs(specs: list[str]) -> dict[str, str]:
    """{name: path} of `name=path` entries; a bare path is named after its last component."""
    models = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec.rstrip("/")).name, spec
        if not name or not path:
            raise ValueError(f"--models entry {spec!r} must be name=path or a path")
        if name in models:
            raise ValueError(f"two --models entries are named {name!r}; name them with name=path")
        models[name] = path
    return models


def load_model(name: str, path: str, args: NiahArguments) -> LoadedModel:
    """A DASS or AST audio classifier in eval mode, with the normalisation of its feature extractor."""
    hub = {"cache_dir": args.cache_dir, "token": args.token}
    config = AutoConfig.from_pretrained(path, **hub)
    if config.model_type not in ("dass", AST_MODEL_TYPE):
        raise ValueError(
            f"model {name!r} ({path}) is a {config.model_type!r} model; run_niah.py runs DASS and Audio Spectrogram "
            "Transformer (ASTForAudioClassification) models, which read normalised kaldi fbank input_values"
        )
    model = AutoModelForAudioClassification.from_pretrained(path, **hub).eval()
    try:
        extractor = AutoFeatureExtractor.from_pretrained(path, **hub)
    except OSError:
        logger.warning(f"{path} has no preprocessor_config.json: using the AudioSet normalisation of DASS / AST")
        extractor = DassFeatureExtractor()
    mean, std = getattr(extractor, "mean", DEFAULT_MEAN), getattr(extractor, "std", DEFAULT_STD)
    if not getattr(extractor, "do_normalize", True):
        mean, std = 0.0, 0.5  # (x - 0) / (2 * 0.5): the identity
    loaded = LoadedModel(
        name=name,
        path=path,
        model=model,
        is_ast=config.model_type == AST_MODEL_TYPE,
        mean=float(mean),
        std=float(std),
        num_mel_bins=int(getattr(config, "num_mel_bins", 128)),
    )
    if loaded.is_ast:
        loaded.ast_table = model.audio_spectrogram_transformer.embeddings.position_embeddings.detach().cpu().clone()
    return loaded


def fit_ast_to_length(loaded: LoadedModel, frames: int, method: str, device: torch.device) -> None:
    """Give an AST the position embeddings of a `frames`-frame input, built from its original table."""
    config = loaded.model.config
    embeddings = loaded.model.audio_spectrogram_transformer.embeddings
    frequency = (config.num_mel_bins - config.patch_size) // config.frequency_stride + 1
    time_patches = (frames - config.patch_size) // config.time_stride + 1
    if time_patches < 1:
        raise ValueError(f"{frames} frames are fewer than one AST patch ({config.patch_size})")
    table = ast_position_embeddings(loaded.ast_table.to(device), frequency, time_patches, method)
    embeddings.position_embeddings = torch.nn.Parameter(table, requires_grad=False)
    config.max_length = frames


# ----------------------------------------------------------------------------------------------------------------
# Needles
# ----------------------------------------------------------------------------------------------------------------


def dataset_description(args: NiahArguments) -> dict:
    """What identifies the needles of a run (compared when a run is resumed)."""
    if args.audio_dir:
        return {"audio_dir": os.path.abspath(args.audio_dir), "labels_file": os.path.abspath(args.labels_file or "")}
    if args.data_files:
        return {"data_files": list(args.data_files)}
    return {"dataset_name": args.dataset_name, "config": args.dataset_config_name, "split": args.split}


def open_rows(args: NiahArguments) -> tuple[object, list[str] | None]:
    """(iterable of rows with `audio_column` and `label_column`, names behind integer labels or None)."""
    given = sum(bool(x) for x in (args.dataset_name, args.data_files, args.audio_dir))
    if given != 1:
        raise ValueError("give exactly one data source: --dataset_name, --data_files or --audio_dir (+ --labels_file)")
    if args.audio_dir:
        return list(folder_rows(args)), None
    dataset = load_audio_dataset(
        dataset_name=args.dataset_name,
        dataset_config_name=args.dataset_config_name,
        split=args.split,
        data_files=args.data_files,
        streaming=args.streaming if args.dataset_name else True,
        audio_column=args.audio_column,
        cache_dir=args.cache_dir,
        token=args.token,
    )
    return dataset, class_label_names(dataset, args.label_column)


def folder_rows(args: NiahArguments) -> Iterator[dict]:
    """Rows {audio: path, labels: [...]} of --audio_dir as listed in --labels_file."""
    if not args.labels_file:
        raise ValueError("--audio_dir needs --labels_file: a CSV with columns file,labels")
    with open(args.labels_file, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"file", "labels"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{args.labels_file} lacks the column(s) {sorted(missing)}; it needs file,labels")
        for row in reader:
            labels = [label.strip() for label in row["labels"].split(args.labels_separator) if label.strip()]
            yield {args.audio_column: os.path.join(args.audio_dir, row["file"]), args.label_column: labels}


def iterate_needles(rows, encoder: LabelEncoder, args: NiahArguments, skips: SkipCounter) -> Iterator[Needle]:
    """Decoded needles (16 kHz mono waveform, multi-hot target), the first --max_needles usable ones."""
    used = 0
    for index, row in enumerate(rows):
        if args.max_needles is not None and used >= args.max_needles:
            return
        try:
            waveform = decode_audio(row[args.audio_column], SAMPLING_RATE)
        except AudioDecodeError as err:
            skips.skip("undecodable", f"row {index}: {err}")
            continue
        target = encoder.encode(row[args.label_column])
        if target is None:
            skips.skip("unknown labels", f"row {index}")
            continue
        if not np.any(waveform):
            skips.skip("silent", f"row {index}")
            continue
        used += 1
        yield Needle(index=index, waveform=waveform, target=target)


# ----------------------------------------------------------------------------------------------------------------
# One point of the sweep
# ----------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def noise_waveform(path: str) -> torch.Tensor:
    """A noise file read once per run (16 kHz mono)."""
    return torch.from_numpy(load_audio(path, SAMPLING_RATE))


def build_haystack(
    needle: Needle, extractor: DassFeatureExtractor, point: Point, frames: int, args: NiahArguments
) -> torch.Tensor:
    """(frames, mel bins) normalised haystack of one needle."""
    noise = point.noise if point.noise in ("zeros", "white") else noise_waveform(point.noise)
    seed = (args.seed, needle.index)
    if point.haystack_level == "waveform":
        waveform = make_haystack_waveform(
            needle.waveform,
            haystack_samples(frames, SAMPLING_RATE),
            point.needle_position,
            noise,
            snr_db=point.snr_db,
            seed=seed,
            sampling_rate=SAMPLING_RATE,
        )
        return haystack_features(waveform, extractor.mean, extractor.std, extractor.num_mel_bins, SAMPLING_RATE)
    features = extractor(needle.waveform, sampling_rate=SAMPLING_RATE, return_tensors="pt")["input_values"][0]
    return make_haystack(
        features,
        frames,
        point.needle_position,
        noise,
        needle_waveform=needle.waveform,
        snr_db=point.snr_db,
        seed=seed,
        mean=extractor.mean,
        std=extractor.std,
        sampling_rate=SAMPLING_RATE,
    )


def evaluate_point(
    loaded: LoadedModel, point: Point, rows, encoder: LabelEncoder, args: NiahArguments, device: torch.device
) -> dict:
    """Tag every needle's haystack at this point; the scores and counts of the point."""
    frames = haystack_frames(point.haystack_seconds)
    batch_size = max(1, args.batch_size * args.needle_frames // frames)
    extractor = DassFeatureExtractor(
        num_mel_bins=loaded.num_mel_bins, mean=loaded.mean, std=loaded.std, max_length=args.needle_frames
    )
    if loaded.is_ast:
        fit_ast_to_length(loaded, frames, args.ast_position_embeddings, device)
    autocast = (
        torch.autocast(device.type, dtype=getattr(torch, args.autocast))
        if args.autocast != "none"
        else contextlib.nullcontext()
    )
    skips = SkipCounter("needle")
    scores, targets, batch = [], [], []
    progress = _progress(args, f"{point.model} {point.haystack_seconds:g}s @{point.needle_position:g} {point.noise}")

    def run_batch():
        inputs = torch.stack([build_haystack(n, extractor, point, frames, args) for n in batch]).to(device)
        with torch.inference_mode(), autocast:
            logits = loaded.model(input_values=inputs).logits
        scores.append(torch.sigmoid(logits.float()).cpu().numpy())
        targets.extend(n.target for n in batch)
        progress.update(len(batch))
        batch.clear()

    try:
        for needle in iterate_needles(rows, encoder, args, skips):
            batch.append(needle)
            if len(batch) == batch_size:
                run_batch()
        if batch:
            run_batch()
    finally:
        progress.close()
    if not targets:
        raise ValueError(f"no usable needle in the data ({dict(skips.counts)} skipped); check the data and labels")
    metrics = compute_niah_metrics(np.concatenate(scores), np.stack(targets))
    return {
        "haystack_frames": frames,
        "status": "ok",
        "mAP": metrics["mAP"],
        "mAUC": metrics["mAUC"],
        "d_prime": metrics["d_prime"],
        "num_needles": metrics["num_examples"],
        "skipped_needles": skips.total,
        "skipped_classes": metrics["skipped_classes"],
        "batch_size": batch_size,
    }


def _progress(args: NiahArguments, description: str):
    from tqdm.auto import tqdm

    return tqdm(total=args.max_needles, desc=description, unit="needle", disable=args.disable_tqdm, leave=False)


def is_out_of_memory(err: BaseException) -> bool:
    """Whether `err` says memory ran out (CUDA, CPU allocator or Python)."""
    oom_types = tuple(
        t for t in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None)) if t
    )
    if isinstance(err, MemoryError) or (oom_types and isinstance(err, oom_types)):
        return True
    message = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in message or "can't allocate memory" in message)


def release_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------------------------


class ResultStore:
    """results.json (run settings + records) and results.csv in an output folder, rewritten after each point."""

    def __init__(self, output_dir: str, run: dict):
        self.folder = Path(output_dir)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.json_path = self.folder / "results.json"
        self.csv_path = self.folder / "results.csv"
        self.records: list[dict] = []
        self.run = run
        if self.json_path.exists():
            saved = json.loads(self.json_path.read_text())
            self._check_same_run(saved.get("run", {}), run)
            self.records = saved.get("results", [])
            self.run["models"] = {**saved["run"].get("models", {}), **run["models"]}

    @staticmethod
    def _check_same_run(saved: dict, run: dict) -> None:
        changed = [key for key in RUN_SETTINGS if saved.get(key) != run.get(key)]
        renamed = [
            name for name, path in run["models"].items() if saved.get("models", {}).get(name, path) != path
        ]
        if changed or renamed:
            what = [f"{key}: {saved.get(key)!r} -> {run.get(key)!r}" for key in changed]
            what += [f"model {name!r} now points to {run['models'][name]}" for name in renamed]
            raise ValueError(
                "the output folder holds results of a different run (" + "; ".join(what) + "); use another "
                "--output_dir, or the same settings to resume"
            )

    def finished(self, point: Point, retry_oom: bool) -> bool:
        for record in self.records:
            if _record_key(record) == point.key:
                return record["status"] == "ok" or (record["status"] == "oom" and not retry_oom)
        return False

    def add(self, record: dict) -> None:
        key = _record_key(record)
        self.records = [r for r in self.records if _record_key(r) != key] + [record]
        self._write(self.json_path, json.dumps({"run": self.run, "results": self.records}, indent=2))
        lines = [",".join(CSV_COLUMNS)]
        for r in self.records:
            lines.append(",".join(_csv_cell(r.get(column)) for column in CSV_COLUMNS))
        self._write(self.csv_path, "\n".join(lines) + "\n")

    @staticmethod
    def _write(path: Path, text: str) -> None:
        partial = path.with_suffix(path.suffix + ".partial")
        partial.write_text(text)
        os.replace(partial, path)


def _record_key(record: dict) -> tuple:
    return Point(
        record["model"],
        record["haystack_seconds"],
        record["needle_position"],
        record["noise"],
        record["snr_db"],
        record["haystack_level"],
    ).key


def _csv_cell(value) -> str:
    if value is None:
        return ""
    text = str(value)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def plot_results(records: list[dict], path: Path) -> Path | None:
    """mAP (%) against haystack seconds (log axis): a line per model and noise setting (mean over positions);
    out-of-memory points as crosses on the axis. None (with a warning) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: niah.png is skipped (pip install 'transformers-dass[plot]')")
        return None
    lines: dict[str, dict[float, list[float]]] = {}
    failed: dict[str, set[float]] = {}
    for record in records:
        noise = record["noise"]
        if noise != "zeros":
            noise = f"{Path(noise).name} {record['snr_db']:g} dB"
        label = f"{record['model']} ({noise}, {record['haystack_level']})"
        if record["status"] == "ok":
            lines.setdefault(label, {}).setdefault(record["haystack_seconds"], []).append(100 * record["mAP"])
        else:
            failed.setdefault(label, set()).add(record["haystack_seconds"])
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for label in sorted(set(lines) | set(failed)):
        points = sorted((s, float(np.mean(v))) for s, v in lines.get(label, {}).items())
        (line,) = axis.plot([s for s, _ in points], [m for _, m in points], marker="o", label=label)
        oom = sorted(failed.get(label, ()))
        if oom:
            axis.plot(oom, [0.0] * len(oom), linestyle="none", marker="x", markersize=9, color=line.get_color())
    axis.set_xscale("log")
    axis.set_xlabel("haystack duration (s)")
    axis.set_ylabel("mAP (%)")
    axis.set_title("Audio needle in a haystack (x: out of memory)")
    axis.set_ylim(bottom=0)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


# ----------------------------------------------------------------------------------------------------------------
# Sweep
# ----------------------------------------------------------------------------------------------------------------


def sweep_points(model_names: list[str], args: NiahArguments) -> list[Point]:
    settings = []
    for noise in args.noise:
        settings += [(noise, None)] if noise == "zeros" else [(noise, float(snr)) for snr in args.snr_db]
    return [
        Point(name, float(seconds), float(position), noise, snr, args.haystack_level)
        for name in model_names
        for noise, snr in settings
        for seconds in sorted(args.lengths_seconds)
        for position in args.positions
    ]


def check_arguments(args: NiahArguments) -> None:
    if args.batch_size < 1 or args.needle_frames < 1:
        raise ValueError("--batch_size and --needle_frames must be positive")
    if args.max_needles is not None and args.max_needles < 1:
        raise ValueError("--max_needles must be positive")
    for position in args.positions:
        if not (math.isfinite(position) and 0.0 <= position <= 1.0):
            raise ValueError(f"--positions must lie in [0, 1], got {position}")
    for seconds in args.lengths_seconds:
        if not (math.isfinite(seconds) and seconds > 0) or haystack_frames(seconds) < args.needle_frames:
            shortest = args.needle_frames / 102.4
            raise ValueError(
                f"haystack length {seconds} s is shorter than the needle ({args.needle_frames} frames = "
                f"{shortest:g} s); give --lengths_seconds of at least {shortest:g}"
            )
    for noise in args.noise:
        if noise not in ("zeros", "white") and not os.path.isfile(noise):
            raise ValueError(f"--noise {noise!r} is neither zeros, white nor an existing noise file")
    if any(n != "zeros" for n in args.noise) and not all(math.isfinite(s) for s in args.snr_db):
        raise ValueError("--snr_db values must be finite")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = HfArgumentParser(NiahArguments)
    argv = sys.argv[1:] if argv is None else argv
    (args,) = parser.parse_args_into_dataclasses(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    check_arguments(args)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    models = parse_model_specs(args.models)

    rows, index_names = open_rows(args)
    if args.labels_csv:
        encoder = LabelEncoder.from_csv(args.labels_csv, index_names=index_names)
    else:
        first = next(iter(models.values()))
        config = AutoConfig.from_pretrained(first, cache_dir=args.cache_dir, token=args.token)
        encoder = LabelEncoder.from_config(config)
        encoder.index_names = index_names
    run = {
        "dataset": dataset_description(args),
        "max_needles": args.max_needles,
        "seed": args.seed,
        "needle_frames": args.needle_frames,
        "ast_position_embeddings": args.ast_position_embeddings,
        "autocast": args.autocast,
        "labels": {"num_labels": encoder.num_labels, "first": encoder.names[:3]},
        "models": dict(models),
    }
    store = ResultStore(args.output_dir, run)

    for name, path in models.items():
        todo = [p for p in sweep_points([name], args) if not store.finished(p, args.retry_oom)]
        if not todo:
            logger.info(f"{name}: every point is already in {store.json_path}")
            continue
        loaded = load_model(name, path, args)
        if not encoder.same_vocabulary(loaded.model.config):
            raise ValueError(
                f"model {name!r} scores {loaded.model.config.num_labels} labels that are not the vocabulary of the "
                f"needles ({encoder.num_labels} labels); every model must score the same labels in the same order"
            )
        loaded.model.to(device)
        for point in todo:
            started = time.perf_counter()
            record = {**asdict(point), "model_path": path, "device": str(device), "error": None}
            try:
                record.update(evaluate_point(loaded, point, rows, encoder, args, device))
            except Exception as err:  # noqa: BLE001 - only out-of-memory is recorded, anything else is raised
                if not is_out_of_memory(err):
                    raise
                message = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
                record.update(status="oom", error=message, haystack_frames=haystack_frames(point.haystack_seconds))
                logger.warning(f"{name} at {point.haystack_seconds:g} s ran out of memory: {message}")
            if record["status"] == "oom":
                release_memory(device)  # after the except block, which holds the failed call's frames
            record["elapsed_s"] = round(time.perf_counter() - started, 3)
            record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            store.add(record)
            if record["status"] == "ok":
                logger.info(
                    f"{name} {point.haystack_seconds:g} s @ {point.needle_position:g} ({point.noise}): "
                    f"mAP {record['mAP']:.4f}, mAUC {record['mAUC']:.4f} over {record['num_needles']} needles"
                )
        loaded.model.to("cpu")
        del loaded
        release_memory(device)

    plot_results(store.records, store.folder / "niah.png")
    return store.records


if __name__ == "__main__":
    main()
