"""`dass` command line: classify audio files, convert released checkpoints.

    dass classify FILE [FILE ...] [--model DIR] [--top-k K] [--json] [--clip-pooling {auto,mean,max}]
                  [--dtype {auto,float32,bfloat16,int8}]
    dass convert --checkpoint FILE --output-dir DIR [--labels-csv CSV]
    dass timeline FILE [--model DIR] [--threshold P] [--smoothing N] [--median-filter SECONDS] [--top-labels K]
                  [--csv OUT] [--png OUT] [--scores OUT.tsv] [--dtype {auto,float32,bfloat16,int8}]
    dass tag INPUT [INPUT ...] --output OUT [--model DIR] [--top-k K] [--segments] [--threshold P] [--smoothing N]
             [--median-filter SECONDS] [--embeddings] [--step-embeddings STEPS.parquet] [--batch-size N]
             [--num-workers N] [--dataset NAME_OR_PATH --split S --audio-column C]   (a table, resumable; torchrun)
    dass similar QUERY --index TABLE [--model DIR] [--top-k K] [--json]   (rank a `dass tag --embeddings` table)
    dass listen [SOURCE] [--model DIR] [--jsonl] [--window S] [--hop S] [--threshold P] [--end-threshold P]
                [--min-gap S] [--lookahead S] [--rate HZ --channels N --format {s16le,f32le}] [--device DEV]
                [--no-pace]   (SOURCE: none = the microphone, - = raw PCM on stdin, a file or a URL)
    dass demo [--model DIR] [--host 127.0.0.1] [--port 7860]     (web page and API; needs the [demo] extra)
    dass export --format onnx --output FILE [--model DIR] [--opset N]  (needs the [onnx] extra)

Exit status 0 when everything worked; 2 when an input file or the --model folder cannot be used: one
`dass COMMAND: error: ...` line on stderr names it and what is wrong (`classify` still prints the results of the
files it could read). Warnings, such as a truncated file, go to stderr as `dass COMMAND: warning: ...` lines, and
so does the precision the model runs in (`dass COMMAND: dtype bfloat16: this CPU has AVX512-BF16`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys

from .inference.precision import DTYPE_CHOICES
from .model.readout import CLIP_POOLING_CHOICES

PACKAGE_LOGGER = "transformers_dass"


def _classify(args: argparse.Namespace) -> int:
    """Classify every file, print the results of those that can be read; exit 2 if any could not."""
    loaded = _load_model(args)
    num_labels = loaded.model.config.num_labels
    if not 1 <= args.top_k <= num_labels:
        raise SystemExit(f"--top-k must be between 1 and {num_labels} (the model's labels), got {args.top_k}.")
    entries = []
    for path in args.files:
        entry = _classify_file(loaded, path, args.top_k, args.clip_pooling)
        if "error" in entry:
            print(f"dass classify: error: {entry['error']}", file=sys.stderr)
        elif not args.json:
            _print_predictions(path, entry["predictions"])
        entries.append(entry)
    if args.json:
        _print_json(entries)
    failed = sum("error" in entry for entry in entries)
    if failed and len(entries) > 1:
        print(f"dass classify: {failed} of {len(entries)} files could not be classified", file=sys.stderr)
    return 2 if failed else 0


def _classify_file(loaded, path: str, top_k: int, clip_pooling: str) -> dict:
    """`{"file", "predictions"}` for a file that reads and classifies, else `{"file", "error"}` (naming the file)."""
    from .inference.classify import classify_file

    try:
        analysis = classify_file(path, loaded.model, loaded.extractor, top_k=top_k, clip_pooling=clip_pooling)
        return {"file": path, "predictions": analysis.labels}
    except (OSError, ValueError) as error:
        message = str(error) if path in str(error) else f"{path}: {error}"
        return {"file": path, "error": message}


def _print_predictions(path: str, predictions: list[dict]) -> None:
    print(f"{path}  (clip readout: {predictions[0]['clip_pooling']})")
    for item in predictions:
        print(f"  {item['score']:.4f}  {item['label']}")
    sys.stdout.flush()  # a file's result shows before the next file's warnings and errors on stderr


def _print_json(entries: list[dict]) -> None:
    """One file: its list of {"label", "score", "clip_pooling"} (nothing if it failed: the error is on stderr).
    Several files: one entry per file, in input order, `{"file", "predictions"}` or `{"file", "error"}`."""
    if len(entries) > 1:
        print(json.dumps(entries, indent=2))
    elif "predictions" in entries[0]:
        print(json.dumps(entries[0]["predictions"], indent=2))


def _load_model(args: argparse.Namespace):
    """`inference.loading.load_model` of --model (default: the bundled demo model) in the --dtype precision, which
    is said on stderr with why."""
    from .inference.loading import load_model

    loaded = load_model(args.model, args.dtype)
    print(f"dass {args.command}: dtype {loaded.reason}", file=sys.stderr)
    return loaded


def _add_dtype_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        default="auto",
        help="Precision on CPU. auto (default): bfloat16 where the CPU computes it natively (AVX512-BF16 or AMX), "
        "else float32; float32: as trained; bfloat16: faster with native support, scores within ~0.01; int8: the "
        "linear layers dynamically quantised. Stderr says which was taken and why.",
    )


def _convert(args: argparse.Namespace) -> int:
    from .model.conversion import convert_checkpoint

    model = convert_checkpoint(args.checkpoint, args.output_dir, labels_csv=args.labels_csv)
    config = model.config
    print(
        f"Wrote {args.output_dir}: dims {config.dims}, depths {config.depths}, {config.num_labels} labels, "
        f"{model.num_parameters():,} parameters."
    )
    return 0


def _timeline(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .inference.classify import classify_file
    from .inference.timeline import plot_timeline, segments, write_csv, write_scores_tsv
    from .utils.checks import non_negative_float, odd_window, positive_int, probability

    try:
        probability(args.threshold, "--threshold")
        odd_window(args.smoothing, "--smoothing")
        non_negative_float(args.median_filter, "--median-filter")
        positive_int(args.top_labels, "--top-labels")
    except ValueError as error:
        raise SystemExit(f"{error}.") from None
    loaded = _load_model(args)
    timeline = classify_file(
        args.file, loaded.model, loaded.extractor, top_k=1, timeline=True, smoothing=args.smoothing, show_progress=None,
        median_filter_s=args.median_filter,
    ).timeline  # fmt: skip
    found = segments(timeline, args.threshold)
    stem = Path(args.file).stem
    csv_path = args.csv or f"{stem}.timeline.csv"
    write_csv(found, csv_path)
    print(f"{args.file}: {timeline.times[-1, 1]:.2f} s, {len(timeline.times)} steps; {len(found)} segments -> {csv_path}")
    if args.scores:
        write_scores_tsv(timeline, args.scores)
        print(f"scores of the {len(timeline.labels)} labels at every step -> {args.scores}")
    if args.no_png:
        return 0
    png_path = args.png or f"{stem}.timeline.png"
    try:
        plot_timeline(timeline, png_path, top_labels=min(args.top_labels, len(timeline.labels)), title=Path(args.file).name)
    except ImportError as error:
        print(f"dass timeline: {'error' if args.png else 'warning'}: no PNG written: {error}", file=sys.stderr)
        return 2 if args.png else 0
    print(f"plot of the {min(args.top_labels, len(timeline.labels))} strongest labels -> {png_path}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .inference.loading import demo_model_path
    from .inference.onnx_export import export_onnx

    try:
        path = export_onnx(args.model or demo_model_path(), args.output, opset=args.opset)
    except ImportError as error:
        print(f"dass export: error: {error}", file=sys.stderr)
        return 2
    print(f"Wrote {path} (input_values: batch x frames x mel bins, any frames; outputs logits, frame_logits)")
    return 0


def _tag(args: argparse.Namespace) -> int:
    """Tag every input into the table OUT; exit 2 if any input could not be tagged (its row holds the error)."""
    from .tagging import tag

    if not args.inputs and args.dataset is None:
        raise SystemExit("dass tag: give INPUT files, folders or manifests, or --dataset")
    try:
        summary = tag(
            args.inputs,
            model=args.model,
            output=args.output,
            dataset=args.dataset,
            split=args.split,
            audio_column=args.audio_column,
            id_column=args.id_column,
            manifest_column=args.manifest_column,
            top_k=args.top_k,
            clip_pooling=args.clip_pooling,
            segments=args.segments,
            threshold=args.threshold,
            smoothing=args.smoothing,
            median_filter_s=args.median_filter,
            embeddings=args.embeddings,
            step_embeddings=args.step_embeddings,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            shard_size=args.shard_size,
            overwrite=args.overwrite,
            retry_failed=args.retry_failed,
            device=args.device,
            dtype=args.dtype,
            show_progress=False if args.no_progress else None,
        )
    except ImportError as error:
        print(f"dass tag: error: {error}", file=sys.stderr)
        return 2
    if summary.rank != 0:
        return 0  # process 0 reports on the whole table and sets the exit status
    for message in summary.errors:
        print(f"dass tag: error: {message}", file=sys.stderr)
    if summary.failed > len(summary.errors):
        more = summary.failed - len(summary.errors)
        print(f"dass tag: ... and {more} more: see the error column of {args.output}", file=sys.stderr)
    print(f"dass tag: {summary.describe()}")
    return 2 if summary.failed else 0


def _similar(args: argparse.Namespace) -> int:
    """Print the --top-k recordings of --index most similar to QUERY, best first (or as JSON)."""
    from .tagging.similar import similar

    try:
        matches = similar(args.query, args.index, model=args.model, top_k=args.top_k, dtype=args.dtype)
    except ImportError as error:
        print(f"dass similar: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([{"id": m.id, "path": m.path, "score": m.score} for m in matches], indent=2))
    else:
        for rank, match in enumerate(matches, 1):
            print(f"{rank:4d}  {match.score:.4f}  {match.id}")
    return 0


def _listen(args: argparse.Namespace) -> int:
    """Report sounds as they start and end; at the end of the stream (or Ctrl-C) close the open ones and say how
    it went (real-time factor, latency) on stderr."""
    from .live import LiveDetector
    from .live.runner import listen_to, summary
    from .live.sources import MicrophoneBlocks, describe, file_blocks, is_url, pcm_blocks

    def warn(message: str) -> None:
        print(f"dass listen: warning: {message}", file=sys.stderr, flush=True)

    if args.source is not None and args.source != "-" and not is_url(args.source):
        from .audio.io import check_audio_path

        check_audio_path(args.source, args.source)  # before loading the model: a typo fails at once
    loaded = _load_model(args)
    detector = LiveDetector(
        loaded.model, loaded.extractor, window_s=args.window, hop_s=args.hop, start_threshold=args.threshold,
        end_threshold=args.end_threshold, min_gap_s=args.min_gap, lookahead_s=args.lookahead,
    )  # fmt: skip
    rate = detector.rate
    if args.source is None:
        try:
            blocks, live = MicrophoneBlocks(args.device, rate), True
        except ImportError as error:
            print(f"dass listen: error: {error}", file=sys.stderr)
            return 2
    elif args.source == "-":
        blocks, live = pcm_blocks(sys.stdin.buffer, args.rate, args.channels, args.format, rate, warn), None
    else:
        blocks, live = file_blocks(args.source, pace=not args.no_pace, target_rate=rate), not args.no_pace
    source = describe(args.source)
    print(
        f"dass listen: {source}: windows of {detector.window_s:g} s every {detector.hop_s:g} s, events on "
        f"{detector.step_s * 1000:.0f} ms steps" + ("; Ctrl-C to stop" if live is not False else ""),
        file=sys.stderr, flush=True,
    )  # fmt: skip

    def write(event) -> None:
        print(event.as_json() if args.jsonl else event.as_line(), flush=True)

    try:
        report = listen_to(detector, blocks, write, live, warn)
    finally:
        _quiet_closed_stdout()
    if report.dropped_s:
        warn(f"{report.dropped_s:.2f} s of audio dropped: the reader's queue was full (the model or the consumer of "
             "the lines was too slow)")  # fmt: skip
    if isinstance(blocks, MicrophoneBlocks) and blocks.losses():
        warn(blocks.losses())
    print(f"dass listen: {summary(detector, report, source)}", file=sys.stderr)
    return 0


def _quiet_closed_stdout() -> None:
    """After the reader of our lines went away (`dass listen | head`), send what is left to /dev/null rather than
    fail again at exit."""
    import os

    try:
        sys.stdout.flush()
    except BrokenPipeError:
        sys.stdout = open(os.devnull, "w")


MODEL_HELP = (
    "Folder (or Hub id) of a converted DASS model. Default: the small demo model bundled with the package "
    "(spoken digits and six synthetic sounds, not AudioSet; see model_cards/dass-demo-digits.md)."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dass", description="DASS audio tagging (transformers-dass).")
    commands = parser.add_subparsers(dest="command", required=True)

    classify = commands.add_parser(
        "classify", help="Print the top labels of audio files (wav/flac/ogg/mp3; m4a/mp4/webm... with [media]; any rate)."
    )
    classify.add_argument("files", nargs="+", metavar="FILE")
    classify.add_argument("--model", help=MODEL_HELP)
    classify.add_argument("--top-k", type=int, default=5, help="How many labels to print (default 5).")
    classify.add_argument(
        "--json",
        action="store_true",
        help='Print JSON. One file: a list of {"label", "score", "clip_pooling"}. Several: one entry per file, in '
        'order, {"file", "predictions": [...]} or {"file", "error"}.',
    )
    classify.add_argument(
        "--clip-pooling",
        choices=CLIP_POOLING_CHOICES,
        default="auto",
        help="How the clip score is read out of the scores every 0.32 s: mean (the paper's average), max (the "
        "highest step: a short sound anywhere), linear_softmax (sum p^2 / sum p of the step probabilities), "
        "attention (models trained with it), auto (default: the model's config.clip_pooling, as pipeline() "
        "uses it; unless the config says otherwise, the mean up to the training length, 10.24 s, and the max "
        "beyond). The output names the readout used.",
    )
    _add_dtype_option(classify)
    classify.set_defaults(handler=_classify)

    convert = commands.add_parser("convert", help="Convert a released .pth/.safetensors checkpoint to a model folder.")
    convert.add_argument("--checkpoint", required=True, help="Released DASS .pth (with or without `module.v.`) or .safetensors.")
    convert.add_argument("--output-dir", required=True)
    convert.add_argument("--labels-csv", help="AudioSet class_labels_indices.csv (index,mid,display_name).")
    convert.set_defaults(handler=_convert)

    timeline = commands.add_parser(
        "timeline", help="When sounds happen: scores every 40 ms over a whole file, as CSV segments and a PNG."
    )
    timeline.add_argument("file", metavar="FILE", help="Audio file of any length (read in blocks).")
    timeline.add_argument("--model", help=MODEL_HELP)
    timeline.add_argument("--threshold", type=float, default=0.5, help="Score from which a step counts (default 0.5).")
    timeline.add_argument("--smoothing", type=int, default=1, help="Moving average over N steps, N odd (default 1: none).")
    timeline.add_argument(
        "--median-filter", type=float, default=0.0, metavar="SECONDS",
        help="Median filter over SECONDS, as sed_scores_eval applies it, after --smoothing (default 0: none).",
    )  # fmt: skip
    timeline.add_argument("--top-labels", type=int, default=10, help="Labels in the PNG, the strongest first (default 10).")
    timeline.add_argument("--csv", help="Segments CSV (start_s,end_s,label,score); default FILE_STEM.timeline.csv.")
    timeline.add_argument("--png", help="Plot (needs matplotlib); default FILE_STEM.timeline.png.")
    timeline.add_argument("--no-png", action="store_true", help="Write the CSV only.")
    timeline.add_argument(
        "--scores", metavar="OUT.tsv",
        help="Also the scores of every label at every step, as a sed_scores_eval score file (onset, offset, one column "
        "per label).",
    )  # fmt: skip
    _add_dtype_option(timeline)
    timeline.set_defaults(handler=_timeline)
    export = commands.add_parser(
        "export", help="Write the model as an ONNX graph for ONNX Runtime (dynamic batch and frames; [onnx] extra)."
    )
    export.add_argument("--format", required=True, choices=("onnx",), help="Output format (onnx).")
    export.add_argument("--model", help=MODEL_HELP)
    export.add_argument("--output", required=True, help="The .onnx file to write.")
    export.add_argument("--opset", type=int, help="ONNX opset (>= 18; default: the exporter's).")
    export.set_defaults(handler=_export)
    _add_tag_command(commands)
    _add_similar_command(commands)
    _add_listen_command(commands)
    from .webapp import (
        add_demo_command,  # `dass demo`: the web page and API, transformers_dass.webapp
    )

    add_demo_command(commands, MODEL_HELP)
    return parser


def _add_tag_command(commands) -> None:
    tag = commands.add_parser(
        "tag",
        help="Tag a whole archive into a table (Parquet/CSV/JSONL): top labels, and with --segments when sounds occur. "
        "Resumable; runs under torchrun / accelerate launch.",
    )
    tag.add_argument(
        "inputs", nargs="*", metavar="INPUT",
        help="Audio files, folders (searched recursively for audio extensions) and manifests (.csv/.jsonl with a "
        "path column).",
    )  # fmt: skip
    tag.add_argument(
        "--output", required=True, metavar="OUT",
        help="The table: .csv or .jsonl by extension, Parquet otherwise (needs pyarrow). Shards go to OUT.parts/ as "
        "the run goes; rerunning the same command resumes.",
    )  # fmt: skip
    tag.add_argument("--model", help=MODEL_HELP)
    _add_dtype_option(tag)  # OUT records the precision: a rerun in another one is refused, not mixed
    tag.add_argument("--top-k", type=int, default=5, help="Labels per row, the best first (default 5).")
    tag.add_argument("--clip-pooling", choices=CLIP_POOLING_CHOICES, default="auto", help="As for `dass classify`.")
    tag.add_argument("--segments", action="store_true", help="Also the (start, end, label, score) segments of `dass timeline`.")
    tag.add_argument("--threshold", type=float, default=0.5, help="Segments: score from which a step counts (default 0.5).")
    tag.add_argument("--smoothing", type=int, default=1, help="Segments: moving average over N steps, N odd (default 1).")
    tag.add_argument(
        "--median-filter", type=float, default=0.0, metavar="SECONDS",
        help="Segments: median filter over SECONDS after --smoothing, as for `dass timeline` (default 0: none).",
    )  # fmt: skip
    tag.add_argument(
        "--embeddings", action="store_true",
        help="Also each clip's embedding (the model's pooled last hidden state, float32) as a list column `embedding`.",
    )  # fmt: skip
    tag.add_argument(
        "--step-embeddings", metavar="STEPS.parquet",
        help="With --segments: also the embedding of every 0.32 s step (the last hidden state averaged over "
        "frequency, float32) into this Parquet file, one row per (id, step) with start_s, end_s.",
    )  # fmt: skip
    tag.add_argument(
        "--batch-size", type=int, default=None,
        help="Clips per forward; only clips of one length are batched (default: 8 on a GPU, 1 on the CPU).",
    )  # fmt: skip
    tag.add_argument(
        "--num-workers", type=int, default=None,
        help="Processes decoding and computing features (0: none); default: cores per process minus one, at most 8.",
    )  # fmt: skip
    tag.add_argument("--shard-size", type=int, default=256, help="Rows per shard: what a kill can lose (default 256).")
    tag.add_argument("--overwrite", action="store_true", help="Start OUT again even if it holds a run with other options.")
    tag.add_argument("--retry-failed", action="store_true", help="On a rerun, tag again the inputs whose rows hold an error.")
    tag.add_argument(
        "--dataset", metavar="NAME_OR_PATH",
        help="A Hugging Face dataset (Hub id, save_to_disk folder, parquet file or glob).",
    )  # fmt: skip
    tag.add_argument("--split", default="train", help="The dataset split (default train).")
    tag.add_argument("--audio-column", default="audio", help="The dataset's audio column (default audio).")
    tag.add_argument("--id-column", help="A dataset column that names each row (default: SPLIT/ROW).")
    tag.add_argument("--manifest-column", default="path", help="The column of file paths in manifests (default path).")
    tag.add_argument("--device", help="cpu, cuda or cuda:N (default: the process's GPU if there is one, else the CPU).")
    tag.add_argument("--no-progress", action="store_true", help="No progress bar (default: one when stderr is a terminal).")
    tag.set_defaults(handler=_tag)


def _add_similar_command(commands) -> None:
    similar = commands.add_parser(
        "similar", help="Search by example: the recordings of a `dass tag --embeddings` table most like QUERY (cosine)."
    )
    similar.add_argument("query", metavar="QUERY", help="The audio file to search with.")
    similar.add_argument("--index", required=True, metavar="TABLE", help="A table written by `dass tag --embeddings`.")
    similar.add_argument("--model", help="The model the table was tagged with (checked against OUT.parts/run.json).")
    similar.add_argument(
        "--dtype", choices=DTYPE_CHOICES, default=None,
        help="Precision of the query's forward; default: the table's, as its run.json records it (else float32).",
    )  # fmt: skip
    similar.add_argument("--top-k", type=int, default=10, help="Recordings to list, most similar first (default 10).")
    similar.add_argument("--json", action="store_true", help="A JSON list of {id, path, score} instead of lines.")
    similar.set_defaults(handler=_similar)


def _add_listen_command(commands) -> None:
    listen = commands.add_parser(
        "listen", help="Report sounds as they start and end, live: a microphone, raw PCM on stdin, a file or a URL."
    )
    listen.add_argument(
        "source", nargs="?", metavar="SOURCE",
        help="Nothing: the default microphone (the [live] extra); -: raw PCM on stdin (see --format); a file (as "
        "`dass classify` reads it) or a URL (http, rtsp...; the [media] extra), paced at real time unless --no-pace.",
    )  # fmt: skip
    listen.add_argument("--model", help=MODEL_HELP)
    _add_dtype_option(listen)
    listen.add_argument(
        "--jsonl", action="store_true", help='One JSON object a line: {"time_s", "kind", "label", "score"}.'
    )
    listen.add_argument(
        "--window", type=float, default=None, metavar="SECONDS",
        help="Audio per window (default: the model's training length, 10.24 s).",
    )  # fmt: skip
    listen.add_argument(
        "--hop", type=float, default=1.0, metavar="SECONDS", help="New audio between windows (default 1)."
    )
    listen.add_argument("--threshold", type=float, default=0.5, help="Score at which a sound starts (default 0.5).")
    listen.add_argument(
        "--end-threshold", type=float, default=0.3,
        help="A sound goes on while its score is at or above this (default 0.3; at most --threshold).",
    )  # fmt: skip
    listen.add_argument(
        "--min-gap", type=float, default=0.2, metavar="SECONDS",
        help="Seconds below --end-threshold after which a sound has ended (default 0.2).",
    )  # fmt: skip
    listen.add_argument(
        "--lookahead", type=float, default=0.0, metavar="SECONDS",
        help="Decide each step from a window that reaches this far past it (more context, more latency; default 0).",
    )  # fmt: skip
    listen.add_argument("--rate", type=int, default=16000, help="stdin: sampling rate in Hz (default 16000).")
    listen.add_argument("--channels", type=int, default=1, help="stdin: interleaved channels (default 1).")
    listen.add_argument(
        "--format", choices=("s16le", "f32le"), default="s16le", help="stdin: sample format (default s16le)."
    )
    listen.add_argument("--device", help="Microphone: a device name or index (`python -m sounddevice` lists them).")
    listen.add_argument(
        "--no-pace", action="store_true", help="A file or URL: as fast as the model goes, not at real time."
    )
    listen.set_defaults(handler=_listen)


def main(argv: list[str] | None = None) -> int:
    from transformers.utils import logging as hf_logging

    args = build_parser().parse_args(argv)
    hf_logging.disable_progress_bar()
    with _package_warnings_on_stderr(args.command):
        try:
            return args.handler(args)
        except (FileNotFoundError, ValueError) as error:
            print(f"dass {args.command}: error: {error}", file=sys.stderr)
            return 2


@contextlib.contextmanager
def _package_warnings_on_stderr(command: str):
    """While the command runs, print the package's warnings (a truncated file, a scan fallback) on stderr as
    `dass COMMAND: warning: ...` lines, like its errors, and only there (not a second time through the root
    logger of a caller that configured logging)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter(f"dass {command}: warning: %(message)s"))
    package_logger = logging.getLogger(PACKAGE_LOGGER)
    propagate = package_logger.propagate
    package_logger.addHandler(handler)
    package_logger.propagate = False
    try:
        yield
    finally:
        package_logger.removeHandler(handler)
        package_logger.propagate = propagate


if __name__ == "__main__":
    sys.exit(main())
