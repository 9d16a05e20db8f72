#!/usr/bin/env python
"""Sound event detection scores of a DASS model on a strongly labelled split: PSDS1, PSDS2, collar-based F1.

Each clip goes through the library's inference path (`inference.classify`: one decode, one forward, the timeline of
`dass timeline`), its scores are written as a sed_scores_eval score file, and `evaluation.sed.sed_metrics` scores
them all against the strong labels (DCASE task 4 settings). Two kinds of split:

    # the demo generator's output (scripts/make_demo_dataset.py): {split}-*.parquet + {split}_strong.tsv
    python scripts/evaluate_sed.py --data /work/sed_data --split eval --output-dir sed_eval
    # AudioSet-strong's table and a folder of its clips ({segment_id}.wav / .flac / ...)
    python scripts/evaluate_sed.py --strong-tsv audioset_eval_strong.tsv --audio-dir clips --model dass-small ...

Without `--model`, the bundled demo model. Labels of the table (AudioSet mids) become the model's label names
through its `config.label_mids` (or `--labels-csv`). Writes OUT/scores/{clip}.tsv and OUT/metrics.json; prints the
metrics. `--clip-map` adds the clip readout's mAP over the evaluated classes; `--ceilings` the scores of perfect
labels laid on 0.32 s, 0.16 s and 40 ms grids (a step marked where the event covers half of it): what a model
with that step can reach at best. Needs the `sed` extra (sed_scores_eval).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from transformers_dass.evaluation import sed
from transformers_dass.inference.classify import analyse_features, classify_file
from transformers_dass.inference.features import waveform_features
from transformers_dass.inference.loading import load_model
from transformers_dass.inference.precision import DTYPE_CHOICES
from transformers_dass.inference.timeline import Timeline, write_scores_tsv

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
CEILING_STEPS = (0.32, 0.16, 0.04)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_argument_group("the split (one of the two)")
    source.add_argument("--data", help="folder written by scripts/make_demo_dataset.py")
    source.add_argument("--split", default="eval", help="its split (default eval: the SED test scenes)")
    source.add_argument("--strong-tsv", help="AudioSet-strong style table: segment_id, start/end_time_seconds, label")
    source.add_argument("--audio-dir", help="with --strong-tsv: the clips, named {segment_id} + an audio suffix")
    parser.add_argument("--model", help="model folder or Hub id (default: the bundled demo model)")
    parser.add_argument("--dtype", choices=DTYPE_CHOICES, default="float32", help="precision (default float32)")
    parser.add_argument("--labels-csv", help="index,mid,display_name: the table's labels to the model's names")
    parser.add_argument("--smoothing", type=int, default=1, help="timeline moving average in steps (odd; 1: none)")
    parser.add_argument("--median-filter", type=float, default=0.0, help="timeline median filter in seconds (0: none)")
    parser.add_argument("--output-dir", default="sed_eval", help="score files and metrics.json (default sed_eval)")
    parser.add_argument("--limit", type=int, help="only the first N clips")
    parser.add_argument("--clip-map", action="store_true", help="also the clip readout's mAP over the classes")
    parser.add_argument("--ceilings", action="store_true", help="also perfect labels on 0.32 s / 0.16 s / 40 ms grids")
    parser.add_argument(
        "--no-timing", action="store_true",
        help="also the floor of a model that says nothing of when: its clip scores repeated at every step",
    )  # fmt: skip
    args = parser.parse_args(argv)
    table = args.strong_tsv is not None
    if (args.data is None) != table or table != (args.audio_dir is not None):
        parser.error("give --data (with --split), or --strong-tsv with --audio-dir")
    return args


def label_names(model, labels_csv: str | None) -> dict[str, str]:
    """The table's labels (mids) -> the model's label names."""
    config = model.config
    names = [config.id2label[i] for i in range(config.num_labels)]
    mapping = dict(zip(config.label_mids or [], names))
    if labels_csv:
        with open(labels_csv, newline="", encoding="utf-8") as handle:
            mapping.update({row["mid"]: row["display_name"] for row in csv.DictReader(handle)})
    return mapping


def demo_split(folder: Path, split: str) -> tuple[list[Path], Path]:
    """The parquet shards and strong-label table of a split written by scripts/make_demo_dataset.py."""
    files, table = sorted(folder.glob(f"{split}-*.parquet")), folder / f"{split}_strong.tsv"
    if not files or not table.exists():
        raise SystemExit(
            f"evaluate_sed: {folder} lacks {split}-*.parquet or {table.name}: make them with "
            f"scripts/make_demo_dataset.py --output-dir {folder} --splits {split}"
        )
    return files, table


def demo_clips(files: list[Path], limit: int | None):
    """(clip id, waveform) of the demo generator's parquet shards, decoded by the library's dataset decoder."""
    from transformers_dass.audio.decoding import decode_audio
    from transformers_dass.training.data import load_audio_dataset

    rows = load_audio_dataset(data_files=[str(path) for path in files], streaming=True)
    for index, row in enumerate(rows):
        if limit is not None and index >= limit:
            return
        yield row["video_id"], decode_audio(row["audio"])


def folder_clips(audio_dir: Path, segments: list[str], limit: int | None):
    """(clip id, file path) of the table's segments that have a file in `audio_dir`."""
    found = {path.stem: path for path in audio_dir.iterdir() if path.suffix.lower() in AUDIO_SUFFIXES}
    missing = [segment for segment in segments if segment not in found]
    if missing:
        print(f"evaluate_sed: {len(missing)} of {len(segments)} segments have no audio file, left out", file=sys.stderr)
    present = [segment for segment in segments if segment in found][:limit]
    return [(segment, found[segment]) for segment in present]


def analyse(loaded, clip, args):
    """The `Analysis` of one clip (a waveform or a file): every label's clip score and the timeline."""
    options = dict(top_k=loaded.model.config.num_labels, timeline=True, smoothing=args.smoothing,
                   median_filter_s=args.median_filter)  # fmt: skip
    if isinstance(clip, np.ndarray):
        return analyse_features(loaded.model, waveform_features(clip, loaded.extractor), **options)
    return classify_file(clip, loaded.model, loaded.extractor, **options)


def clip_map(clip_scores: dict[str, dict[str, float]], ground_truth, classes: list[str]) -> float:
    """mAP of the clip readout over `classes`: a clip is positive for a class with an event of it."""
    from transformers_dass.training.metrics import tagging_metrics

    clips = sorted(clip_scores)
    scores = np.array([[clip_scores[clip][name] for name in classes] for clip in clips])
    targets = np.array([[any(e[2] == name for e in ground_truth[clip]) for name in classes] for clip in clips])
    return tagging_metrics(scores, targets.astype(np.float32))["mAP"]


def no_timing(timelines: dict[str, Timeline], clip_scores: dict[str, dict[str, float]]) -> dict[str, Timeline]:
    """The timelines of a model that knows only *whether*: each label's clip score at every step."""
    flat = {}
    for clip, timeline in timelines.items():
        row = np.array([clip_scores[clip][name] for name in timeline.labels], dtype=np.float32)
        flat[clip] = Timeline(times=timeline.times, scores=np.tile(row, (len(timeline.times), 1)), labels=timeline.labels)
    return flat


def ceilings(ground_truth, durations, classes: list[str]) -> dict[str, dict[str, float]]:
    """`sed_metrics` of perfect labels on each grid of `CEILING_STEPS`."""
    results = {}
    for step in CEILING_STEPS:
        timelines = {}
        for clip, events in ground_truth.items():
            times = sed.step_times(durations[clip], step)
            kept = [event for event in events if event[2] in classes]
            timelines[clip] = Timeline(times=times, scores=sed.reference_scores(kept, times, classes), labels=classes)
        results[f"perfect labels on {step * 1000:g} ms"] = sed.sed_metrics(timelines, ground_truth, durations, classes)
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    sed.load_sed_scores_eval()  # the missing extra or pin is said before the model runs
    files, table = demo_split(Path(args.data), args.split) if args.data is not None else (None, None)
    loaded = load_model(args.model, args.dtype)
    names = label_names(loaded.model, args.labels_csv)
    if files is not None:
        ground_truth = sed.read_strong_labels(table, names)
        clips = demo_clips(files, args.limit)
    else:
        ground_truth = sed.read_strong_labels(args.strong_tsv, names)
        clips = folder_clips(Path(args.audio_dir), sorted(ground_truth), args.limit)
    scores_dir = Path(args.output_dir) / "scores"
    scores_dir.mkdir(parents=True, exist_ok=True)
    timelines, durations, clip_scores = {}, {}, {}
    for clip_id, clip in clips:
        analysis = analyse(loaded, clip, args)
        timelines[clip_id], durations[clip_id] = analysis.timeline, analysis.duration_s
        clip_scores[clip_id] = {item["label"]: item["score"] for item in analysis.labels}
        write_scores_tsv(analysis.timeline, scores_dir / f"{clip_id}.tsv")
    if not timelines:
        raise SystemExit("evaluate_sed: no clip to evaluate")
    truth = {clip: ground_truth.get(clip, []) for clip in timelines}  # a clip without events has none in the table
    metrics = sed.sed_metrics(timelines, truth, durations)
    classes = sed.ground_truth_classes(truth, next(iter(timelines.values())).labels)
    if args.clip_map:
        metrics["clip_map"] = clip_map(clip_scores, truth, classes)
    report = {
        "model": loaded.name_or_path, "dtype": loaded.dtype, "clips": len(timelines),
        "events": sum(map(len, truth.values())), "median_filter_s": args.median_filter, "smoothing": args.smoothing,
        "metrics": metrics,
    }  # fmt: skip
    if args.ceilings:
        report["ceilings"] = ceilings(truth, durations, classes)
    if args.no_timing:
        report["no_timing"] = sed.sed_metrics(no_timing(timelines, clip_scores), truth, durations)
    (Path(args.output_dir) / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['clips']} clips, {report['events']} events, {metrics['classes']} classes; model {report['model']}")
    floor = {"no timing (clip scores at every step)": report["no_timing"]} if args.no_timing else {}
    for name, values in {"model": metrics, **floor, **report.get("ceilings", {})}.items():
        shown = ", ".join(f"{key} {value:.3f}" for key, value in values.items() if key != "classes")
        print(f"  {name}: {shown}")
    print(f"score files -> {scores_dir}, metrics -> {Path(args.output_dir) / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
