"""What `dass tag` reads: audio files, folders, manifests (CSV or JSONL with a path column) or a dataset split.

`discover_inputs` turns the command's INPUT arguments into one ordered list of `TagInput`, the same on every
process of a distributed run (folders are walked in sorted order), each with the `id` under which its row is
written and found again on resume. Files named on the command line or in a manifest are always tagged (an
unreadable one becomes a row with its error); in folders only files with an audio extension are taken, and the
others are counted and reported, not tagged.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from transformers.utils import logging

from ..audio.io import AUDIO_SUFFIXES
from ..utils.optional import install_hint, require

logger = logging.get_logger(__name__)

MANIFEST_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
DATASETS_HINT = install_hint("tag")

__all__ = ["InputList", "TagInput", "discover_inputs"]


@dataclass(frozen=True)
class TagInput:
    """One thing to tag.

    Attributes:
        id: its key in the output table (the path as given, or `split/row` of a dataset); unique in a run.
        path: the file to read, or the audio's original path inside a dataset (may be None there).
        row: the dataset row that holds the audio, for dataset inputs; None for files.
    """

    id: str
    path: str | None
    row: int | None = None


@dataclass
class InputList:
    """The inputs of a run in order, and the dataset their `row`s index (audio column cast to decode=False)."""

    items: list[TagInput]
    dataset: object | None = None
    audio_column: str = "audio"
    skipped_in_folders: list[str] = field(default_factory=list)


def discover_inputs(
    inputs: list[str] | tuple[str, ...] = (),
    *,
    manifest_column: str = "path",
    dataset: str | None = None,
    split: str = "train",
    audio_column: str = "audio",
    id_column: str | None = None,
    warn: bool = True,
) -> InputList:
    """Every input of a run, in a fixed order.

    Args:
        inputs: audio files, folders (searched recursively for `AUDIO_SUFFIXES`) and manifests (`.csv`, `.jsonl`
            with a `manifest_column` of paths, relative ones resolved against the manifest's folder).
        dataset: a Hugging Face dataset (Hub id, `save_to_disk` folder, or parquet file/glob); its `split` is
            tagged row by row from `audio_column`, each row's id its `id_column` value or `split/row`.
        warn: log the non-audio files left out of folders and the repeated inputs (one process of a run does).

    Raises:
        FileNotFoundError: an input (not a manifest row) does not exist.
        ValueError: a manifest without the path column, a dataset without the audio column, or no input at all.
    """
    items: list[TagInput] = []
    skipped: list[str] = []
    for argument in inputs:
        path = Path(argument)
        if path.is_dir():
            found, ignored = _folder_files(path)
            items += [TagInput(id=name, path=name) for name in found]
            skipped += ignored
        elif path.suffix.lower() in MANIFEST_SUFFIXES and path.is_file():
            items += [TagInput(id=name, path=name) for name in _manifest_paths(path, manifest_column)]
        elif path.exists():
            items.append(TagInput(id=str(argument), path=str(argument)))
        else:
            raise FileNotFoundError(f"input {argument} does not exist; check the path (files, folders and manifests are read)")
    table = None
    if dataset is not None:
        table = _open_dataset(dataset, split, audio_column)
        items += _dataset_items(table, split, audio_column, id_column)
    if not items:
        raise ValueError(
            "nothing to tag: give audio files, folders with audio files, a manifest (.csv/.jsonl with a "
            f"'{manifest_column}' column) or --dataset"
        )
    if skipped and warn:
        examples = ", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        logger.warning(
            f"{len(skipped)} file(s) in the input folders are not audio by their extension and are not tagged ({examples}); "
            "name them as inputs, or in a manifest, to tag them anyway"
        )
    return InputList(items=_unique(items, warn), dataset=table, audio_column=audio_column, skipped_in_folders=skipped)


def _folder_files(folder: Path) -> tuple[list[str], list[str]]:
    """(audio files, other files) under `folder`, recursively, sorted; hidden files and folders are ignored."""
    audio, other = [], []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = os.path.join(root, name)
            (audio if Path(name).suffix.lower() in AUDIO_SUFFIXES else other).append(path)
    return audio, other


def _manifest_paths(manifest: Path, column: str) -> list[str]:
    """The paths of a CSV or JSONL manifest's `column`, relative ones joined to the manifest's folder."""
    kind = MANIFEST_SUFFIXES[manifest.suffix.lower()]
    with open(manifest, newline="", encoding="utf-8") as handle:
        if kind == "csv":
            reader = csv.DictReader(handle)
            if column not in (reader.fieldnames or []):
                raise ValueError(
                    f"manifest {manifest} has no '{column}' column (columns: {reader.fieldnames}); name the column "
                    "of file paths with --manifest-column"
                )
            values = [row[column] for row in reader]
        else:
            values = []
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{manifest} line {number} is not JSON ({err}); fix the line") from None
                if not isinstance(record, dict) or column not in record:
                    raise ValueError(
                        f"{manifest} line {number} has no '{column}' key; name the key of file paths with --manifest-column"
                    )
                values.append(record[column])
    base = manifest.parent
    paths = []
    for number, value in enumerate(values, start=2 if kind == "csv" else 1):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{manifest}: row {number} has an empty '{column}'; give every row a file path")
        paths.append(value if os.path.isabs(value) else str(base / value))
    return paths


def _open_dataset(name_or_path: str, split: str, audio_column: str):
    """The split of a dataset with its audio column kept encoded (`Audio(decode=False)`, read by soundfile)."""
    datasets = require("datasets", "tag", "--dataset")
    from ..training.data.loading import keep_audio_encoded, load_audio_dataset

    path = Path(name_or_path)
    if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        table = datasets.load_from_disk(str(path))
        if isinstance(table, datasets.DatasetDict):
            if split not in table:
                raise ValueError(f"dataset {name_or_path} has no split {split!r} (splits: {list(table)}); pass --split")
            table = table[split]
        table = keep_audio_encoded(table, audio_column)
    elif name_or_path.endswith(".parquet") or "*" in name_or_path:
        table = load_audio_dataset(data_files=name_or_path, split=split, audio_column=audio_column)
    else:
        table = load_audio_dataset(dataset_name=name_or_path, split=split, audio_column=audio_column)
    if audio_column not in table.column_names:
        raise ValueError(
            f"dataset {name_or_path} has no audio column {audio_column!r} (columns: {table.column_names}); pass "
            "--audio-column"
        )
    return table


def _dataset_items(table, split: str, audio_column: str, id_column: str | None) -> list[TagInput]:
    """One input per row; the original file path is read from the audio values without their bytes."""
    if id_column is not None and id_column not in table.column_names:
        raise ValueError(f"the dataset has no id column {id_column!r} (columns: {table.column_names}); pass --id-column")
    paths = _audio_paths(table, audio_column)
    ids = [str(value) for value in table[id_column]] if id_column else [f"{split}/{row}" for row in range(len(table))]
    return [TagInput(id=ids[row], path=paths[row], row=row) for row in range(len(table))]


def _audio_paths(table, audio_column: str) -> list[str | None]:
    """The file path of each row's audio (the `path` of `{bytes, path}` values, or a column of paths), read from
    the Arrow table without loading the bytes; None where there is none."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = table.select_columns([audio_column]).with_format("arrow")[:].column(audio_column)  # memory-mapped
    if pa.types.is_struct(column.type) and column.type.get_field_index("path") >= 0:
        return pc.struct_field(column, "path").to_pylist()
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column.to_pylist()
    return [None] * len(table)


def _unique(items: list[TagInput], warn: bool = True) -> list[TagInput]:
    """`items` without repeated ids (a file named twice, or in a folder and a manifest): the first is kept."""
    seen: set[str] = set()
    unique = []
    for item in items:
        if item.id not in seen:
            seen.add(item.id)
            unique.append(item)
    if len(unique) < len(items) and warn:
        logger.warning(f"{len(items) - len(unique)} input(s) were given more than once and are tagged once")
    return unique
