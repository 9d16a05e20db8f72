"""The NIAH sweep's settings (`NiahArguments`, an `HfArgumentParser` dataclass), their checks and the points they
make: one `Point` per (model, haystack length, needle position, noise, SNR, haystack level)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from ....model.readout import check_clip_pooling
from ..haystack import haystack_frames


@dataclass
class NiahArguments:
    """The command line of `scripts/run_niah.py` (see its docstring)."""

    models: list[str] = field(metadata={"help": "Models as name=path (DASS or AST folders / Hub ids)."})
    output_dir: str = field(metadata={"help": "Where results.json, results.csv and niah.png go."})
    lengths_seconds: list[float] = field(
        default_factory=lambda: [10.0, 50.0, 250.0, 1000.0, 9000.0],
        metadata={"help": "Haystack lengths in seconds (1024 frames = 10 s), each at least the needle's."},
    )
    positions: list[float] = field(
        default_factory=lambda: [0.0, 0.5, 1.0], metadata={"help": "Relative needle positions in [0, 1]."}
    )
    long_seconds: float | None = field(
        default=None,
        metadata={"help": "Haystacks of at least this many seconds use --long_positions and --long_max_needles."},
    )
    long_positions: list[float] | None = field(
        default=None, metadata={"help": "Needle positions of the long haystacks (default: --positions)."}
    )
    long_max_needles: int | None = field(
        default=None, metadata={"help": "Needles of the long haystacks (default: --max_needles)."}
    )
    noise: list[str] = field(
        default_factory=lambda: ["zeros"], metadata={"help": "Haystack kinds: zeros, white, or noise file paths."}
    )
    snr_db: list[float] = field(
        default_factory=lambda: [10.0], metadata={"help": "Needle-to-noise ratios in dB (not used for zeros)."}
    )
    haystack_level: str = field(
        default="features",
        metadata={"help": "features: splice needle features between noise frames; waveform: mix the needle audio "
                          "into a background fixed per length (niah_mixing.MixedHaystacks).",
                  "choices": ["features", "waveform"]},
    )
    clip_pooling: list[str] = field(
        default_factory=lambda: ["mean"],
        metadata={"help": "Clip readouts scored from one forward per haystack: mean (the paper's), max (DASS only)."},
    )
    seed: int = field(
        default=0, metadata={"help": "Noise seed; needle i uses (seed, i) (features level), a length (seed, frames)."}
    )
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
    """One haystack setting of one model; every clip readout of it comes from the same forwards."""

    model: str
    haystack_seconds: float
    needle_position: float
    noise: str
    snr_db: float | None
    haystack_level: str

    @property
    def key(self) -> tuple:
        return (self.model, self.haystack_seconds, self.needle_position, self.noise, self.snr_db, self.haystack_level)


def sweep_points(model_names: list[str], args: NiahArguments) -> list[Point]:
    """Every point of the run, in order: model, noise setting, length, position."""
    settings = []
    for noise in args.noise:
        settings += [(noise, None)] if noise == "zeros" else [(noise, float(snr)) for snr in args.snr_db]
    return [
        Point(name, float(seconds), float(position), noise, snr, args.haystack_level)
        for name in model_names
        for noise, snr in settings
        for seconds in sorted(args.lengths_seconds)
        for position in positions_at(seconds, args)
    ]


def is_long(seconds: float, args: NiahArguments) -> bool:
    return args.long_seconds is not None and seconds >= args.long_seconds


def positions_at(seconds: float, args: NiahArguments) -> list[float]:
    """The needle positions of a haystack length (--long_positions from --long_seconds on)."""
    return args.long_positions if is_long(seconds, args) and args.long_positions else args.positions


def max_needles_at(seconds: float, args: NiahArguments) -> int | None:
    """The needles of a haystack length (--long_max_needles from --long_seconds on)."""
    return args.long_max_needles if is_long(seconds, args) and args.long_max_needles else args.max_needles


def check_arguments(args: NiahArguments) -> None:
    """ValueError naming the argument to fix, before anything is loaded."""
    if args.batch_size < 1 or args.needle_frames < 1:
        raise ValueError("--batch_size and --needle_frames must be positive")
    for name in ("max_needles", "long_max_needles"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name} must be positive")
    for position in args.positions + (args.long_positions or []):
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
    if not args.clip_pooling or len(set(args.clip_pooling)) != len(args.clip_pooling):
        raise ValueError(f"--clip_pooling needs distinct readouts, got {args.clip_pooling}")
    for pooling in args.clip_pooling:
        check_clip_pooling(pooling, "--clip_pooling")

