"""Needles of the NIAH sweep: labelled clips from a Hub dataset, parquet shards or a folder with a labels CSV,
decoded to 16 kHz mono with their multi-hot targets."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ....audio.decoding import AudioDecodeError, SkipCounter, decode_audio
from ....training.data import LabelEncoder, class_label_names, load_audio_dataset
from .arguments import NiahArguments

SAMPLING_RATE = 16000


@dataclass
class Needle:
    """Row `index` of the data: its (samples,) float32 waveform at 16 kHz and its (num_labels,) multi-hot target."""

    index: int
    waveform: np.ndarray
    target: np.ndarray


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


def iterate_needles(
    rows, encoder: LabelEncoder, args: NiahArguments, skips: SkipCounter, max_needles: int | None
) -> Iterator[Needle]:
    """Decoded needles (16 kHz mono waveform, multi-hot target), the first `max_needles` usable ones."""
    used = 0
    for index, row in enumerate(rows):
        if max_needles is not None and used >= max_needles:
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

