"""The Gradio app of `dass demo`: a page that tags a recording and draws its timeline, listens live, and a
`/classify` API.

The page has two tabs. "Recording": upload a file or record from the microphone (or click an example); it shows
the top labels of the whole recording, the timeline of the strongest labels (the PNG of `dass timeline`) and the
detected segments, with a progress bar while a long file runs. "Live": the browser's microphone streams to the
server in half-second chunks through `dass listen`'s detector (`live_tab.LiveTab`): a table of the sounds as they
start and end (time HH:MM:SS.ss from the start of the recording, kind, label, score; the last 200 events), the
labels sounding now and a status line (seconds heard, windows run, real-time factor); stopping the recording
closes the sounds still going. The API endpoint `/classify` takes one audio file and returns
`({label: score}, [{"start_s", "end_s", "label", "score"}, ...])`, the numbers of `dass classify` and the rows of
`dass timeline`'s CSV:

    from gradio_client import Client, handle_file
    labels, found = Client("http://127.0.0.1:7860/").predict(handle_file("clip.wav"), api_name="/classify")

One model serves everyone: uploads and API calls queue and run one at a time. A live recording holds a slot of its
own queue from its first chunk to its last (`LIVE_LISTENERS` at once, `LIVE_TIME_LIMIT_S` each), so that a
listener never holds up the uploads; its windows share the model with them (the forward keeps no state). Gradio is
imported here only inside functions, so that `dass --help` works without it.
"""

import os
import tempfile
from pathlib import Path

from ..audio.io import AUDIO_SUFFIXES
from ..inference.timeline import SEGMENT_FIELDS
from . import require_gradio
from .analysis import MAX_FILE_MB, Analysis, Tagger
from .live_tab import EVENT_COLUMNS, MAX_ROWS, NOTHING_SOUNDING, LiveTab

# The repository's example clips, when running from a clone (a wheel install has none).
EXAMPLES_DIR = Path(__file__).resolve().parents[3] / "examples"
TOP_K = 5  # labels in the page and the API's default: `dass classify`'s
PLOT_LABELS = 10  # rows of the timeline: `dass timeline --top-labels`'s default
STREAM_EVERY_S = 0.5  # the browser sends the microphone in chunks of this many seconds (gradio's default)
LIVE_TIME_LIMIT_S = 600  # one live recording at most (then its queue slot goes to the next listener)
LIVE_LISTENERS = 4  # live recordings at once; more wait for a slot

__all__ = ["EXAMPLES_DIR", "build_app", "serve"]


def _example_files(examples_dir) -> list[str]:
    folder = Path(examples_dir) if examples_dir else None
    if folder is None or not folder.is_dir():
        return []
    return sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)


def _segment_rows(analysis: Analysis) -> list[dict]:
    """The segments as `dass timeline`'s CSV rows (seconds to 0.01 s, scores to 4 decimals)."""
    return [segment.as_row(rounded=True) for segment in analysis.segments]


def _timeline_image(analysis: Analysis, title: str):
    """`plot_timeline`'s PNG as a PIL image (drawn in a temporary folder, removed at once)."""
    from PIL import Image

    from ..inference.timeline import plot_timeline

    with tempfile.TemporaryDirectory(prefix="dass-demo-") as folder:
        png = os.path.join(folder, "timeline.png")
        plot_timeline(analysis.timeline, png, top_labels=min(PLOT_LABELS, len(analysis.timeline.labels)), title=title)
        with Image.open(png) as image:
            return image.convert("RGB")


def _summary(analysis: Analysis, name: str, threshold: float, model: str) -> str:
    readout = f" · clip readout: {analysis.clip_pooling}" if analysis.clip_pooling else ""
    step_ms = 1000 * float(analysis.timeline.times[0, 1] - analysis.timeline.times[0, 0])
    return (
        f"**{name}**: {analysis.source}; {len(analysis.timeline.times)} steps of {step_ms:.0f} ms{readout}. "
        f"{len(analysis.segments)} segments at threshold {threshold:g}. Model: {model}."
    )


def _as_path(audio) -> str:
    """The local path of an uploaded file: a path string, or gradio's FileData (object or dict)."""
    if isinstance(audio, dict):
        return audio.get("path") or ""
    return getattr(audio, "path", audio) or ""


def build_app(tagger: Tagger, examples_dir=EXAMPLES_DIR):
    """The `gr.Blocks` app around a loaded `Tagger` (not launched; `serve` launches it)."""
    gr = require_gradio()
    from gradio.data_classes import FileData

    def analyse(path: str, threshold: float, smoothing: int, top_k: int, show_progress: bool) -> Analysis:
        try:
            return tagger.analyse(
                path, top_k=top_k, threshold=threshold, smoothing=int(smoothing), show_progress=show_progress
            )
        except (FileNotFoundError, ValueError) as error:  # bad input: a message in the page, not a crash
            raise gr.Error(str(error).replace(path, os.path.basename(path)), print_exception=False) from None

    def tag(audio, threshold, smoothing, progress=gr.Progress(track_tqdm=True)):
        if not audio:
            return None, None, None, ""
        progress(0, desc="the whole recording through the model")
        analysis = analyse(audio, threshold, smoothing, TOP_K, show_progress=True)
        name = os.path.basename(audio)
        return (
            analysis.labels,
            _timeline_image(analysis, name),
            [list(row.values()) for row in _segment_rows(analysis)],
            _summary(analysis, name, threshold, tagger.description),
        )

    def classify(
        audio: FileData, threshold: float = 0.5, smoothing: int = 1, top_k: int = TOP_K
    ) -> tuple[dict[str, float], list[dict]]:
        """Top labels {label: score} of the whole recording (as `dass classify`) and the detected segments
        [{start_s, end_s, label, score}] (as `dass timeline`'s CSV)."""
        analysis = analyse(_as_path(audio), threshold, smoothing, top_k, show_progress=False)
        return analysis.labels, _segment_rows(analysis)

    live = LiveTab(tagger.model, tagger.extractor)

    def live_stream(chunk, session):
        try:
            return live.stream(chunk, session)
        except ValueError as error:  # a chunk that is not audio: a message in the page, not a crash
            raise gr.Error(str(error), print_exception=False) from None

    limit = f"{tagger.max_bytes / (1024 * 1024):.0f} MiB"
    with gr.Blocks(title="DASS: what does it hear?", analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown("## DASS: what does it hear, and when?")
        with gr.Tab("Recording", id="recording"):
            gr.Markdown(
                "Drop a recording of any length (wav, flac, ogg, mp3; m4a, mp4, webm and other phone or video "
                f"files with the [media] extra; any rate and channels, up to {limit}) or record one. The whole "
                "recording goes through the state-space model at once, no 10 s windows: the top labels of the "
                "clip, then the scores of the strongest labels every 40 ms and the segments where a score reaches "
                "the threshold."
            )
            with gr.Row():
                with gr.Column():
                    audio = gr.Audio(
                        sources=["upload", "microphone"], type="filepath", format=None, label="Recording",
                        elem_id="dass-audio",
                    )
                    threshold = gr.Slider(0.05, 0.95, value=0.5, step=0.05, label="Segment threshold")
                    smoothing = gr.Slider(1, 15, value=1, step=2, label="Smoothing (steps of 40 ms, odd)")
                    button = gr.Button("Tag", variant="primary")
                    examples = _example_files(examples_dir)
                    if examples:
                        gr.Examples([[p] for p in examples], inputs=[audio], label="Examples", cache_examples=False)
                with gr.Column():
                    labels = gr.Label(
                        num_top_classes=TOP_K, label="Top labels (whole recording)", elem_id="dass-labels"
                    )
                    summary = gr.Markdown(elem_id="dass-summary")
            plot = gr.Image(
                label="Timeline: the strongest labels over time", type="pil", interactive=False, elem_id="dass-timeline"
            )
            table = gr.Dataframe(
                headers=list(SEGMENT_FIELDS), label="Detected segments", interactive=False, elem_id="dass-segments"
            )
            gr.on(
                [audio.change, button.click],
                tag,
                inputs=[audio, threshold, smoothing],
                outputs=[labels, plot, table, summary],
                api_visibility="private",
                concurrency_id="model",
            )
        with gr.Tab("Live", id="live"):
            gr.Markdown(
                f"Listen through this browser's microphone: every {live.hop_s:g} s, the last "
                f"{live.window_s:g} s go through the model, and each sound is reported once, "
                "when it starts and when it ends (as `dass listen` does). Press record; stop to close the sounds "
                f"still going. The table keeps the last {MAX_ROWS} events; one recording lasts at most "
                f"{LIVE_TIME_LIMIT_S // 60} minutes."
            )
            with gr.Row():
                with gr.Column():
                    microphone = gr.Audio(
                        sources=["microphone"], type="numpy", streaming=True, label="Microphone",
                        elem_id="dass-live-audio",
                    )
                    now = gr.Markdown(NOTHING_SOUNDING, elem_id="dass-live-now")
                    status = gr.Markdown(elem_id="dass-live-status")
                with gr.Column():
                    events = gr.Dataframe(
                        headers=list(EVENT_COLUMNS), label="Events (start and end of each sound)", interactive=False,
                        elem_id="dass-live-events",
                    )
            session = gr.State(None, time_to_live=LIVE_TIME_LIMIT_S + 3600)
            shown = [session, events, now, status]
            microphone.start_recording(live.start, outputs=shown, api_visibility="private", queue=False)
            # Not the "model" queue: a stream holds its worker from the first chunk to the last, so with the model's
            # one worker a listener would hold up every upload (and every other listener) until it stopped. Each
            # chunk runs at most one window (about 1 s of audio's worth of model time per second heard at most),
            # and the forward is stateless, so listeners share the model with the uploads, LIVE_LISTENERS at once.
            microphone.stream(
                live_stream, inputs=[microphone, session], outputs=shown, stream_every=STREAM_EVERY_S,
                time_limit=LIVE_TIME_LIMIT_S, concurrency_id="live", concurrency_limit=LIVE_LISTENERS,
                show_progress="hidden", api_visibility="private",
            )  # fmt: skip
            microphone.stop_recording(
                live.stop, inputs=[session], outputs=shown, concurrency_limit=None, api_visibility="private"
            )
        gr.api(classify, api_name="classify", concurrency_id="model")
    return app


def serve(
    model_dir=None,
    host: str = "127.0.0.1",
    port: int = 7860,
    max_file_mb: float = MAX_FILE_MB,
    examples_dir=EXAMPLES_DIR,
    block: bool = True,
):
    """Load the model once, build the app and launch it on `host:port` (local only: no share link).

    Returns the launched `gr.Blocks` when `block` is False (call `.close()` to stop it).
    """
    require_gradio()
    app = build_app(Tagger(model_dir, max_file_mb), examples_dir)
    app.queue(default_concurrency_limit=1)
    app.launch(
        server_name=host,
        server_port=port,
        share=False,
        show_error=True,
        max_file_size=f"{int(max_file_mb)}mb",
        allowed_paths=[str(examples_dir)] if _example_files(examples_dir) else None,
        prevent_thread_lock=not block,
        ssr_mode=False,
        quiet=not block,
    )
    return app
