"""`tag()`: the whole archive-tagging run behind `dass tag`, callable from Python.

Steps: join the launcher's process group if there is one (`distributed.Ranks`); list the inputs
(`inputs.discover_inputs`); check OUT and skip what it already holds (`store.RunStore`); decode and compute
features in DataLoader workers (`features.InputFeatures`); batch clips of equal length (`batching.LengthBuckets`);
score them (`predict.Predictor`); write shards as rows come; process 0 merges them into OUT at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..inference.features import LONG_FILE_SECONDS
from ..model.readout import CLIP_POOLING_CHOICES, check_clip_pooling
from ..utils.checks import non_negative_float, odd_window, positive_int, probability
from .batching import LengthBuckets
from .distributed import Ranks, share
from .features import InputFeatures, worker_init
from .inputs import discover_inputs
from .predict import Predictor, error_row
from .step_table import StepShardWriter, check_step_path, merge_steps, step_rows
from .store import RunStore
from .table import require_pyarrow, table_format

__all__ = ["TagSummary", "tag"]

# Bumped when the rows of the same options change meaning: a run of another version is not resumed into.
TABLE_VERSION = 2  # 2: segments of clips shorter than 10.24 s come from the padded forward, as the labels
ERRORS_SHOWN = 10


@dataclass
class TagSummary:
    """What a run did.

    Attributes:
        files: rows in the table (inputs of the run, tagged now or before).
        failed: rows with an error.
        audio_seconds: seconds of audio in the table's rows.
        tagged_now: inputs this run tagged (all processes); the others were already in OUT.
        audio_seconds_now: seconds of audio this run tagged.
        seconds: wall time of this run, from the first input read to the table written.
        output: the table written, or None.
        rows: the rows in input order when no output was given (process 0; empty on the others), else None.
        errors: the first error messages (up to 10).
        skipped_in_folders: files in the input folders left out because their extension is not audio.
        rank: the process that returned this summary (only process 0's covers the whole table).
        step_embeddings: the per-step embeddings file written (process 0), or None.
        step_rows: without an output, the per-step embeddings' rows (`step_table.STEP_COLUMNS`) in input order
            when asked for (process 0; empty on the others), else None.
    """

    files: int
    failed: int
    audio_seconds: float
    tagged_now: int
    audio_seconds_now: float
    seconds: float
    output: str | None = None
    rows: list[dict] | None = None
    errors: list[str] = field(default_factory=list)
    skipped_in_folders: int = 0
    rank: int = 0
    step_embeddings: str | None = None
    step_rows: list[dict] | None = None

    @property
    def files_per_second(self) -> float:
        return self.tagged_now / self.seconds if self.seconds > 0 else 0.0

    @property
    def audio_hours_per_second(self) -> float:
        return self.audio_seconds_now / 3600.0 / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        """One paragraph for people: the table, the failures and the throughput of this run."""
        where = f" -> {self.output}" if self.output else ""
        text = (
            f"{self.files} files, {self.audio_seconds / 3600:.3f} h of audio, {self.failed} failed{where}. "
            f"This run tagged {self.tagged_now} files ({self.audio_seconds_now / 3600:.3f} h) in {self.seconds:.2f} s: "
            f"{self.files_per_second:.2f} files/s, {self.audio_hours_per_second:.4f} audio h/s"
        )
        if self.files > self.tagged_now:
            text += f"; {self.files - self.tagged_now} were already in the output"
        if self.step_embeddings:
            text += f"; per-step embeddings -> {self.step_embeddings}"
        if self.skipped_in_folders:
            text += f"; {self.skipped_in_folders} non-audio files in the folders were not tagged"
        return text + "."


def tag(
    inputs=(),
    model=None,
    output: str | os.PathLike | None = None,
    *,
    feature_extractor=None,
    dataset: str | None = None,
    split: str = "train",
    audio_column: str = "audio",
    id_column: str | None = None,
    manifest_column: str = "path",
    top_k: int = 5,
    clip_pooling: str = "auto",
    segments: bool = False,
    threshold: float = 0.5,
    smoothing: int = 1,
    median_filter_s: float = 0.0,
    embeddings: bool = False,
    step_embeddings: str | os.PathLike | bool | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    shard_size: int = 256,
    overwrite: bool = False,
    retry_failed: bool = False,
    device: str | None = None,
    dtype: str | None = None,
    show_progress: bool | None = None,
    long_file_seconds: float = LONG_FILE_SECONDS,
) -> TagSummary:
    """Tag every input: its top-k labels and scores (and with `segments` when each sound occurs), one row each.

    Args:
        inputs: audio files, folders (recursive) and manifests (.csv/.jsonl with a `manifest_column` of paths).
        model: a model folder or Hub id, a loaded `DassForAudioClassification` (then pass `feature_extractor`
            unless the default features fit), or None for the bundled demo model.
        output: the table to write (.parquet, the default format; .csv; .jsonl), with its shards in
            `OUTPUT.parts/`; rerunning resumes it. None: nothing is written, `TagSummary.rows` holds the table.
        dataset, split, audio_column, id_column: a Hugging Face dataset split to tag too (see `discover_inputs`).
        top_k, clip_pooling: as `dass classify --top-k --clip-pooling`; the rows equal its results.
        segments, threshold, smoothing, median_filter_s: also `dass timeline`'s segments (runs of steps scoring >=
            threshold, after its moving average and median filter).
        embeddings: also each row's clip embedding, `embedding`: `DassModel`'s `pooler_output` (the last hidden
            state averaged over frequency and time, float32, `config.hidden_size` values), from the same forward.
        step_embeddings: with `segments`, also the embedding of every 0.32 s step (the last hidden state averaged
            over frequency, float32), from the same forward: a .parquet path to write them to, keyed by id and
            step (`step_table`; with `output` only, whose folder keeps their shards), or True without `output`
            (then `TagSummary.step_rows` holds them).
        batch_size: clips per forward; only clips of the same length are batched. Default: 8 on a GPU, 1 on the
            CPU (where a batch costs as much per clip as clips one by one, and smaller batches start sooner).
        num_workers: DataLoader processes decoding and computing features (0: in this process); default: the
            node's cores over its processes, minus one, at most 8.
        shard_size: rows per shard (what a kill can lose per process).
        overwrite: clear OUT and its shards first, whatever they hold.
        retry_failed: tag again the inputs whose rows in OUT hold an error.
        device: "cpu", "cuda", "cuda:N"; default: the process's GPU (`LOCAL_RANK`) if there are GPUs.
        dtype: None keeps the model's precision (float32 for a folder); one of `precision.DTYPE_CHOICES`, as
            `dass classify --dtype`, is resolved for `device` (said on stderr by process 0) and applied to the
            model (a model object passed in is changed in place). OUT records the precision, so a rerun in
            another one is refused rather than mixed.
        show_progress: a progress bar (process 0); None: when stderr is a terminal.
        long_file_seconds: files longer than this are read in blocks (bounded memory).

    Under `torchrun` / `accelerate launch`, each process tags a disjoint share of the inputs into its own
    shards and process 0 writes the table; the result equals a one-process run's.

    Raises:
        ValueError: bad options, no inputs, or OUT holds a run with other options (`store.RunOptionsError`).
        FileNotFoundError: an input named on the command line does not exist.
    """
    ranks = Ranks.from_environment(device)
    try:
        if batch_size is None:
            batch_size = 8 if ranks.device.type == "cuda" else 1
        _check_options(top_k, clip_pooling, threshold, smoothing, median_filter_s, batch_size, shard_size)
        steps = _check_step_embeddings(step_embeddings, segments, output)
        return _run(
            ranks, inputs, model, output, feature_extractor, dataset, split, audio_column, id_column,
            manifest_column, top_k, clip_pooling, segments, threshold, smoothing, median_filter_s, embeddings, steps,
            batch_size, num_workers, shard_size, overwrite, retry_failed, dtype, show_progress, long_file_seconds,
        )  # fmt: skip
    finally:
        ranks.close()


def _run(
    ranks, inputs, model, output, feature_extractor, dataset, split, audio_column, id_column, manifest_column,
    top_k, clip_pooling, segments, threshold, smoothing, median_filter_s, embeddings, steps, batch_size,
    num_workers, shard_size, overwrite, retry_failed, dtype, show_progress, long_file_seconds,
) -> TagSummary:  # fmt: skip
    if isinstance(steps, Path) or (output is not None and table_format(output) == "parquet"):
        require_pyarrow()  # before any work, not at the first shard
    model, extractor = _model_and_extractor(model, feature_extractor)
    precision = _resolve_precision(dtype, ranks) if dtype is not None else None
    if not 1 <= top_k <= model.config.num_labels:
        raise ValueError(f"top_k must be between 1 and {model.config.num_labels} (the model's labels), got {top_k}")
    if segments:
        from ..inference.timeline import check_timeline_model

        check_timeline_model(model)
    found = discover_inputs(
        list(inputs), manifest_column=manifest_column, dataset=dataset, split=split, audio_column=audio_column,
        id_column=id_column, warn=ranks.rank == 0,
    )  # fmt: skip
    ids = [item.id for item in found.items]
    steps_path = steps if isinstance(steps, Path) else None
    store = RunStore(output, segments, embeddings, steps_path) if output is not None else None
    done: set[str] = set()
    if store is not None:
        options = _run_options(
            model, extractor, precision, top_k, clip_pooling, segments, threshold, smoothing, median_filter_s,
            embeddings, store, steps_path,
        )  # fmt: skip
        store.check(options, overwrite)
        ranks.barrier()
        if ranks.rank == 0:
            store.prepare(options, overwrite)
        ranks.barrier()
        done = {key for key, row in store.rows().items() if not (retry_failed and row.get("error"))}
    # Split all inputs, then drop the done ones: each process's share stays the same whatever the others wrote.
    mine = [position for position in share(len(ids), ranks.rank, ranks.world_size) if ids[position] not in done]

    if precision is not None:
        from ..inference.precision import apply_precision

        model = apply_precision(model, precision)
    model.to(ranks.device)
    predictor = Predictor(
        model, top_k, clip_pooling, segments, threshold, smoothing,
        batch_size=batch_size, median_filter_s=median_filter_s, embeddings=embeddings, step_embeddings=bool(steps),
    )  # fmt: skip
    step_writer = StepShardWriter(store.parts, ranks.rank) if steps_path is not None else None
    writer = store.writer(ranks.rank, shard_size, step_writer.flush if step_writer else None) if store else None
    kept: list[dict] = []
    kept_steps: list = []

    def emit(rows: list[dict], steps_of_rows: list) -> None:
        if writer is None:
            kept.extend(rows)
            kept_steps.extend(steps_of_rows)
            return
        if step_writer is not None:
            step_writer.add(steps_of_rows)  # buffered before the rows: written no later than their table shard
        writer.add(rows)

    start = time.perf_counter()
    tagged, audio = _tag_share(
        found, mine, extractor, predictor, emit, ranks, num_workers, show_progress, long_file_seconds
    )
    if step_writer is not None:
        step_writer.flush()  # before the table's last shard, as before every other one
    if writer is not None:
        writer.close()
    ranks.barrier()
    tagged, audio = ranks.sum([tagged, audio])
    steps_written, steps_kept = None, None
    if store is not None:
        table = store.merge(ids) if ranks.rank == 0 else None
        rows = None
        if steps_path is not None and ranks.rank == 0:
            merge_steps(store.parts, steps_path, {row["id"] for row in table if not row.get("error")})
            steps_written = str(steps_path)
    else:
        by_id = {row["id"]: row for part in ranks.gather(kept) for row in part}
        table = [by_id[key] for key in ids] if ranks.rank == 0 else None
        rows = table if ranks.rank == 0 else []
        if steps:
            steps_by_id = dict(item for part in ranks.gather(kept_steps) for item in part)
            steps_kept = step_rows([(key, steps_by_id[key]) for key in ids if key in steps_by_id])
            steps_kept = steps_kept if ranks.rank == 0 else []
    seconds = time.perf_counter() - start
    if table is None:  # not process 0 of a run with an output: its own share
        table = kept
    errors = [row["error"] for row in table if row.get("error")]
    return TagSummary(
        files=len(table),
        failed=len(errors),
        audio_seconds=sum(row["duration_s"] or 0.0 for row in table),
        tagged_now=int(tagged),
        audio_seconds_now=audio,
        seconds=seconds,
        output=str(output) if output is not None else None,
        rows=rows,
        errors=errors[:ERRORS_SHOWN],
        skipped_in_folders=len(found.skipped_in_folders),
        rank=ranks.rank,
        step_embeddings=steps_written,
        step_rows=steps_kept,
    )


def _tag_share(found, positions, extractor, predictor, emit, ranks, num_workers, show_progress, long_file_seconds):
    """Tag the inputs at `positions`, passing rows to `emit` as batches finish. Returns (inputs, audio seconds)."""
    workers = _default_workers(ranks) if num_workers is None else num_workers
    features = InputFeatures(found, positions, extractor, long_file_seconds)
    loader = torch.utils.data.DataLoader(
        features,
        batch_size=None,  # items one by one; LengthBuckets batches them by length
        collate_fn=_as_is,
        num_workers=workers,
        worker_init_fn=worker_init if workers else None,
        # enough decoded clips ahead to fill the next batch while the model runs this one
        prefetch_factor=max(2, -(-2 * predictor.batch_size // workers)) if workers else None,
    )
    buckets = LengthBuckets(predictor.batch_size)
    show = sys.stderr.isatty() if show_progress is None else show_progress
    bar = _progress_bar(len(positions), show and ranks.rank == 0, ranks)
    tagged, audio = 0, 0.0

    def run(batch):
        nonlocal tagged, audio
        predicted = predictor.predict(batch, found.items)
        emit(predicted.rows, predicted.steps)
        tagged += len(batch)
        audio += sum(item.duration_s for item in batch)
        bar.update(len(batch))
        if not bar.disable:
            bar.set_postfix_str(f"{audio / 3600 / max(bar.format_dict['elapsed'], 1e-9):.4f} audio h/s", refresh=False)

    try:
        for item in loader:
            if item.error is not None:
                emit([error_row(item, found.items[item.position], predictor.segments, predictor.embeddings)], [])
                tagged += 1
                bar.update(1)
                continue
            for batch in buckets.add(item):
                run(batch)
        for batch in buckets.flush():
            run(batch)
    finally:
        bar.close()
    return tagged, audio


def _as_is(item):
    return item


def _progress_bar(total: int, show: bool, ranks: Ranks):
    from tqdm.auto import tqdm

    label = "tagging" if ranks.world_size == 1 else f"tagging (process 0 of {ranks.world_size})"
    return tqdm(total=total, desc=label, unit="file", disable=not show, dynamic_ncols=True)


def _default_workers(ranks: Ranks) -> int:
    """The node's cores over its processes, one left for the model, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cores // max(ranks.local_world_size, 1) - 1))


def _resolve_precision(dtype: str, ranks: Ranks) -> str:
    """The precision `dtype` (a `precision.DTYPE_CHOICES` value) takes on this process's device, said once."""
    from ..inference.precision import resolve_dtype

    choice, reason = resolve_dtype(dtype, ranks.device)
    if ranks.rank == 0:
        print(f"dass tag: dtype {reason}", file=sys.stderr)
    return choice


def _model_and_extractor(model, feature_extractor):
    """(model in eval mode, feature extractor) from a folder / Hub id / None (the demo model) or loaded objects."""
    from ..inference.loading import load_model

    if model is None or isinstance(model, (str, os.PathLike)):
        loaded = load_model(model, dtype=None)  # the precision is applied once the run's options are checked
        return loaded.model, feature_extractor if feature_extractor is not None else loaded.extractor
    if feature_extractor is None:
        from ..model.feature_extraction_dass import DassFeatureExtractor

        feature_extractor = DassFeatureExtractor()
    return model.eval(), feature_extractor


def _check_options(top_k, clip_pooling, threshold, smoothing, median_filter_s, batch_size, shard_size) -> None:
    check_clip_pooling(clip_pooling, "clip_pooling", CLIP_POOLING_CHOICES)
    positive_int(top_k, "top_k")
    probability(threshold, "threshold")
    odd_window(smoothing, "smoothing")
    non_negative_float(median_filter_s, "median_filter_s")
    positive_int(batch_size, "batch_size")
    positive_int(shard_size, "shard_size")


def _check_step_embeddings(step_embeddings, segments: bool, output) -> Path | bool:
    """The per-step embeddings asked for: their file (with an output), True (without one) or False."""
    if step_embeddings is None or step_embeddings is False:
        return False
    if not segments:
        raise ValueError(
            "--step-embeddings come with the timeline's steps: pass --segments too (tag(..., segments=True))"
        )
    if output is None:
        if step_embeddings is not True:
            raise ValueError(
                "step_embeddings=PATH needs an output table (its folder keeps the shards that make a run resumable): "
                "pass output=..., or step_embeddings=True to get them in TagSummary.step_rows"
            )
        return True
    if step_embeddings is True:
        raise ValueError("with an output, step_embeddings names their .parquet file (e.g. steps.parquet), not True")
    return check_step_path(step_embeddings, output)


def _run_options(
    model, extractor, precision, top_k, clip_pooling, segments, threshold, smoothing, median_filter_s, embeddings,
    store, steps_path=None,
) -> dict:  # fmt: skip
    """What decides the rows, recorded in OUT.parts/run.json: a rerun must match it to resume. `model` is the
    model as loaded or given; `precision` the dtype applied to it for the run (None: none)."""
    options = {
        "table_version": TABLE_VERSION,
        "model": model_fingerprint(model),
        "precision": precision,
        "feature_extractor": extractor_fingerprint(extractor),
        "top_k": top_k,
        "clip_pooling": clip_pooling,
        "segments": segments,
        "format": store.kind,
    }
    if segments:
        options.update(threshold=threshold, smoothing=smoothing)
        if median_filter_s:  # recorded only when used: tables written before the option existed still resume
            options.update(median_filter_s=median_filter_s)
    if embeddings:  # recorded only when asked for, as median_filter_s: tables without the column still resume
        options.update(embeddings=True)
    if steps_path is not None:  # where they go: a rerun naming another file is refused, not merged into it
        options.update(step_embeddings=str(steps_path.resolve()))
    return options


def extractor_fingerprint(extractor) -> str:
    """A short hash of the feature extractor's settings (what decides the features)."""
    return hashlib.sha256(extractor.to_json_string().encode()).hexdigest()[:16]


def model_fingerprint(model) -> str:
    """A short hash of the model's config and every weight: the same model gives the same value wherever its
    folder is; other weights, another dtype or another config give another."""
    config = model.config.to_dict()
    config.pop("_name_or_path", None)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]

