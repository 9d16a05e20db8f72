"""The NIAH sweep: every point of `NiahArguments` for every model, one forward per haystack scoring every clip
readout, batched, resumable, an out-of-memory point recorded and skipped."""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from dataclasses import asdict
from datetime import datetime, timezone

import numpy as np
import torch
from transformers import AutoConfig

from ....audio.decoding import SkipCounter
from ....model.feature_extraction_dass import DassFeatureExtractor
from ....model.readout import read_out
from ....training.data import LabelEncoder
from ..haystack import haystack_frames
from ..metric import compute_niah_metrics
from .arguments import (
    NiahArguments,
    Point,
    check_arguments,
    max_needles_at,
    sweep_points,
)
from .haystacks import build_haystack
from .models import (
    LoadedModel,
    fit_ast_to_length,
    is_ast_model,
    load_model,
    parse_model_specs,
)
from .needles import dataset_description, iterate_needles, open_rows
from .results import ResultStore, plot_results

logger = logging.getLogger(__name__)


def model_poolings(name: str, is_ast: bool, args: NiahArguments) -> list[str]:
    """The readouts a model is scored with: all of --clip_pooling for DASS; AST has no frame scores, only its
    pooled output, recorded as "mean"."""
    if is_ast:
        if args.clip_pooling != ["mean"]:
            logger.warning(f"{name}: AST has no frame scores; only its own pooled output is scored (as mean)")
        return ["mean"]
    return list(args.clip_pooling)


def clip_scores(loaded: LoadedModel, inputs: torch.Tensor, poolings: list[str]) -> dict[str, torch.Tensor]:
    """{pooling: (batch, num_labels) float64 sigmoid scores} from one forward (`readout.read_out` for DASS).

    In float64: a float32 sigmoid is exactly 1 from a logit of about 17 on, which max readouts reach, and the ties
    it makes would change the ranking that AP and AUC measure (float64 saturates only beyond 36)."""
    if loaded.is_ast:
        with torch.inference_mode():
            return {"mean": torch.sigmoid(loaded.model(input_values=inputs).logits.double())}
    readouts = read_out(loaded.model, inputs, poolings)
    return {pooling: torch.sigmoid(logits.double()) for pooling, logits in readouts.clip_logits.items()}


def evaluate_point(
    loaded: LoadedModel,
    point: Point,
    poolings: list[str],
    rows,
    encoder: LabelEncoder,
    args: NiahArguments,
    device: torch.device,
) -> list[dict]:
    """Tag every needle's haystack at this point: one result (scores and counts) per clip readout, from the
    metric's per-readout breakdown."""
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
    scores = {pooling: [] for pooling in poolings}
    targets, batch = [], []
    max_needles = max_needles_at(point.haystack_seconds, args)
    progress = _progress(args, max_needles, f"{point.model} {point.haystack_seconds:g}s @{point.needle_position:g}")

    def run_batch():
        inputs = torch.stack([build_haystack(n, extractor, point, frames, args) for n in batch]).to(device)
        with autocast:
            for pooling, values in clip_scores(loaded, inputs, poolings).items():
                scores[pooling].append(values.cpu().numpy())
        targets.extend(n.target for n in batch)
        progress.update(len(batch))
        batch.clear()

    try:
        for needle in iterate_needles(rows, encoder, args, skips, max_needles):
            batch.append(needle)
            if len(batch) == batch_size:
                run_batch()
        if batch:
            run_batch()
    finally:
        progress.close()
    if not targets:
        raise ValueError(f"no usable needle in the data ({dict(skips.counts)} skipped); check the data and labels")
    references = np.stack(targets)
    metrics = compute_niah_metrics(
        np.concatenate([np.concatenate(scores[p]) for p in poolings]),
        np.concatenate([references] * len(poolings)),
        clip_pooling=[p for p in poolings for _ in range(len(references))],
    )
    return [
        {
            "clip_pooling": group["clip_pooling"],
            "haystack_frames": frames,
            "status": "ok",
            "mAP": group["mAP"],
            "mAUC": group["mAUC"],
            "d_prime": group["d_prime"],
            "num_needles": group["num_examples"],
            "skipped_needles": skips.total,
            "skipped_classes": group["skipped_classes"],
            "batch_size": batch_size,
        }
        for group in metrics["breakdown"]
    ]


def _progress(args: NiahArguments, total: int | None, description: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="needle", disable=args.disable_tqdm, leave=False)


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


def run_sweep(args: NiahArguments) -> list[dict]:
    """Run every point of `args` not yet in `args.output_dir` (results.json / .csv rewritten after each), and plot
    them; returns all the records of the folder, one per (point, clip readout)."""
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
        poolings = model_poolings(name, is_ast_model(path, args), args)
        todo = [p for p in sweep_points([name], args) if not store.finished(p, poolings, args.retry_oom)]
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
            for record in run_point(loaded, point, poolings, rows, encoder, args, device):
                store.add(record)
        loaded.model.to("cpu")
        del loaded
        release_memory(device)

    plot_results(store.records, store.folder / "niah.png")
    return store.records


def run_point(
    loaded: LoadedModel, point: Point, poolings: list[str], rows, encoder, args: NiahArguments, device: torch.device
) -> list[dict]:
    """The records of one point, one per readout; an out-of-memory point gives "oom" records instead of raising."""
    started = time.perf_counter()
    base = {**asdict(point), "model_path": loaded.path, "device": str(device), "error": None}
    try:
        results = evaluate_point(loaded, point, poolings, rows, encoder, args, device)
    except Exception as err:  # noqa: BLE001 - only out-of-memory is recorded, anything else is raised
        if not is_out_of_memory(err):
            raise
        message = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        frames = haystack_frames(point.haystack_seconds)
        results = [{"clip_pooling": p, "status": "oom", "error": message, "haystack_frames": frames} for p in poolings]
        logger.warning(f"{point.model} at {point.haystack_seconds:g} s ran out of memory: {message}")
    if results[0]["status"] == "oom":
        release_memory(device)  # after the except block, which holds the failed call's frames
    finished = {
        "elapsed_s": round(time.perf_counter() - started, 3),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    records = [{**base, **result, **finished} for result in results]
    for record in records:
        if record["status"] == "ok":
            logger.info(
                f"{point.model} {point.haystack_seconds:g} s @ {point.needle_position:g} ({point.noise}, "
                f"{record['clip_pooling']}): mAP {record['mAP']:.4f}, mAUC {record['mAUC']:.4f} over "
                f"{record['num_needles']} needles"
            )
    return records
