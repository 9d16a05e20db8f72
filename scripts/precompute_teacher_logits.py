#!/usr/bin/env python
"""Run a teacher (or an ensemble) over an audio dataset once and write its logits as parquet shards.

Two outputs, both read by scripts/train_dass.py:

- `--mode logits_only` (default): shards with the clip id and `teacher_logits`, to stream beside the audio with
  `train_dass.py --teacher_logits_files OUT/*.parquet` (looked up by `--id_column_name`, so the audio can be
  shuffled freely). Small: 527 float32 per clip.
- `--mode with_audio`: the dataset's rows with a `teacher_logits` column added, to train on with
  `train_dass.py --train_files OUT/*.parquet --teacher_logits_column teacher_logits`.

Clips that do not decode, are empty or shorter than one frame are skipped with a counted warning. To spread the
work over several processes or GPUs, run one process per part with `--num_parts N --part_index i`.

    python scripts/precompute_teacher_logits.py --teacher_model_name_or_path MIT/ast-finetuned-audioset-10-10-0.4593 \
        --dataset_name agkphysics/AudioSet --dataset_config_name unbalanced --streaming --output_dir ast-logits
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from datasets import Audio, Dataset, Features, List, Value
from transformers import (
    AutoFeatureExtractor,
    AutoModelForAudioClassification,
    HfArgumentParser,
)

from transformers_dass import DassFeatureExtractor
from transformers_dass.audio.decoding import AudioDecodeError, SkipCounter, decode_audio
from transformers_dass.training.data import (
    TEACHER_LOGITS_COLUMN,
    load_audio_dataset,
    split_for_node,
)
from transformers_dass.training.distillation import prepare_teacher

logger = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class PrecomputeArguments:
    teacher_model_name_or_path: list[str] = field(metadata={"help": "Teacher(s); several are averaged."})
    output_dir: str = field(metadata={"help": "Folder for the parquet shards and teacher_logits_info.json."})
    dataset_name: str | None = field(default=None)
    dataset_config_name: str | None = field(default=None)
    data_dir: str | None = field(default=None)
    split: str = field(default="train")
    data_files: list[str] | None = field(default=None, metadata={"help": "Parquet shards (globs) instead."})
    streaming: bool = field(default=False)
    audio_column_name: str = field(default="audio")
    id_column_name: str = field(default="video_id")
    mode: str = field(default="logits_only", metadata={"choices": ["logits_only", "with_audio"]})
    teacher_feature_extractor: str = field(
        default="student",
        metadata={
            "help": "'student': DASS features (what the teacher reads during training by default); 'own': the "
            "first teacher's feature extractor.",
            "choices": ["student", "own"],
        },
    )
    max_length: int = field(default=1024, metadata={"help": "Frames per clip for the 'student' features."})
    batch_size: int = field(default=32)
    rows_per_shard: int = field(default=10000)
    num_parts: int = field(default=1, metadata={"help": "Split the data into this many parts (one per process)."})
    part_index: int = field(default=0, metadata={"help": "Which part this process computes."})
    max_clips: int | None = field(default=None, metadata={"help": "Stop after this many clips (for trials)."})
    device: str = field(default="cuda" if torch.cuda.is_available() else "cpu")
    dtype: str = field(default="float32", metadata={"choices": list(DTYPES)})
    cache_dir: str | None = field(default=None)
    token: str | None = field(default=None)


class ShardWriter:
    """Buffers output rows and writes them as `<prefix>-<part>-<n>.parquet` every `rows_per_shard` rows."""

    def __init__(self, args: PrecomputeArguments, features: Features | None):
        self.args = args
        self.features = features
        self.rows: list[dict] = []
        self.shards = 0
        self.written = 0

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.args.rows_per_shard:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        name = f"{self.args.split}-{self.args.part_index:03d}-{self.shards:05d}.parquet"
        path = os.path.join(self.args.output_dir, name)
        if self.args.mode == "logits_only":
            table = pa.table(
                {
                    self.args.id_column_name: [row[self.args.id_column_name] for row in self.rows],
                    TEACHER_LOGITS_COLUMN: pa.array(
                        [row[TEACHER_LOGITS_COLUMN] for row in self.rows], pa.list_(pa.float32())
                    ),
                }
            )
            pq.write_table(table, path)
        else:
            self._dataset().to_parquet(path)
        self.written += len(self.rows)
        self.shards += 1
        self.rows = []

    def _dataset(self) -> Dataset:
        """The buffered rows with their original schema plus the logits column, audio kept as encoded bytes."""
        audio = self.args.audio_column_name
        if self.features is None:
            return Dataset.from_list(self.rows)
        # Audio features cannot be encoded without torchcodec, so write the column as its storage struct and
        # cast it back, which is a schema change only.
        storage = Features({**self.features, audio: {"bytes": Value("binary"), "path": Value("string")}})
        storage[TEACHER_LOGITS_COLUMN] = List(Value("float32"))
        return Dataset.from_list(self.rows, features=storage).cast_column(audio, Audio())


def load_teacher(args: PrecomputeArguments):
    hub = {"cache_dir": args.cache_dir, "token": args.token}
    teachers = [AutoModelForAudioClassification.from_pretrained(p, **hub) for p in args.teacher_model_name_or_path]
    teacher = prepare_teacher(teachers[0] if len(teachers) == 1 else teachers)
    teacher.to(device=args.device, dtype=DTYPES[args.dtype])
    if args.teacher_feature_extractor == "own":
        extractor = AutoFeatureExtractor.from_pretrained(args.teacher_model_name_or_path[0], **hub)
    else:
        extractor = DassFeatureExtractor(max_length=args.max_length)
    return teacher, extractor


@torch.no_grad()
def teacher_logits(teacher, extractor, waveforms: list[np.ndarray], args: PrecomputeArguments) -> np.ndarray:
    """(clips, num_labels) float32 teacher logits of mono waveforms at the extractor's rate."""
    # A DASS extractor keeps long clips whole unless asked: the logits are of the fixed-length training clips.
    cut = {"truncation": True} if isinstance(extractor, DassFeatureExtractor) else {}
    features = extractor(waveforms, sampling_rate=extractor.sampling_rate, return_tensors="pt", **cut)["input_values"]
    outputs = teacher(input_values=features.to(device=args.device, dtype=DTYPES[args.dtype]))
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
    return logits.float().cpu().numpy()


def run(args: PrecomputeArguments) -> dict:
    """Compute and write the logits; returns the summary also written to teacher_logits_info.json."""
    os.makedirs(args.output_dir, exist_ok=True)
    dataset = load_audio_dataset(
        dataset_name=args.dataset_name if not args.data_files else None,
        dataset_config_name=args.dataset_config_name,
        split=args.split,
        data_files=args.data_files,
        data_dir=args.data_dir,
        streaming=args.streaming,
        audio_column=args.audio_column_name,
        cache_dir=args.cache_dir,
        token=args.token,
    )
    dataset = split_for_node(dataset, rank=args.part_index, world_size=args.num_parts)
    teacher, extractor = load_teacher(args)
    writer = ShardWriter(args, dataset.features)
    skips = SkipCounter()
    batch_rows, batch_waveforms, seen = [], [], 0

    def flush_batch():
        if not batch_rows:
            return
        for row, logits in zip(batch_rows, teacher_logits(teacher, extractor, batch_waveforms, args)):
            writer.add({**row, TEACHER_LOGITS_COLUMN: logits.tolist()})
        batch_rows.clear()
        batch_waveforms.clear()

    for row in dataset:
        if args.max_clips is not None and seen >= args.max_clips:
            break
        seen += 1
        if args.mode == "logits_only" and row.get(args.id_column_name) is None:
            raise KeyError(f"rows need an id column {args.id_column_name!r} to key the logits; they have {sorted(row)}")
        try:
            waveform = decode_audio(row[args.audio_column_name], extractor.sampling_rate)
        except AudioDecodeError as err:
            skips.skip("unusable audio", f"{row.get(args.id_column_name, '?')}: {err}")
            continue
        batch_rows.append(row if args.mode == "with_audio" else {args.id_column_name: row[args.id_column_name]})
        batch_waveforms.append(waveform)
        if len(batch_rows) == args.batch_size:
            flush_batch()
    flush_batch()
    writer.flush()

    info = {
        "teachers": args.teacher_model_name_or_path,
        "mode": args.mode,
        "teacher_feature_extractor": args.teacher_feature_extractor,
        "clips_written": writer.written,
        "clips_skipped": dict(skips.counts),
        "shards": writer.shards,
        "part": [args.part_index, args.num_parts],
    }
    info_name = "teacher_logits_info.json" if args.num_parts == 1 else f"teacher_logits_info-{args.part_index:03d}.json"
    with open(os.path.join(args.output_dir, info_name), "w", encoding="utf-8") as handle:
        json.dump(info, handle, indent=1)
    logger.info(
        f"wrote {writer.written} clips in {writer.shards} shards to {args.output_dir}; skipped {dict(skips.counts)}"
    )
    return info


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    (args,) = HfArgumentParser(PrecomputeArguments).parse_args_into_dataclasses(sys.argv[1:] if argv is None else argv)
    return run(args)


if __name__ == "__main__":
    main()
