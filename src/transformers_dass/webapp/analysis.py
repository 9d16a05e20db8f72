"""What the demo shows for one recording, computed by the function behind `dass classify` and `dass timeline`.

`Tagger` loads a model folder once (`inference.loading.load_model`) and `Tagger.analyse(path)` returns an
`Analysis`: one decode and one forward (`inference.classify.classify_file`) give the clip's top labels (the numbers
of `dass classify FILE`), the scores of every 40 ms step (`dass timeline FILE`'s) and their segments
(`timeline.segments`). Nothing here needs gradio.

Bad input raises `ValueError` (or `FileNotFoundError`) with a message meant for the page: an empty or undecodable
file (not audio, a header cut short, a FLAC cut in its frames), a file with no or too few samples, or a file over
the size limit. (A WAV cut in its data is read up to the cut, as libsndfile does: the page says its duration.)
Any rate and any number of channels are converted (to the extractor's rate, mono), not refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..audio.io import audio_info
from ..inference.classify import classify_file
from ..inference.loading import load_model
from ..inference.timeline import Segment, Timeline, segments
from ..utils.checks import probability

# Uploads up to 200 MiB: an hour of 16 kHz mono 16-bit WAV is 110 MiB; longer or richer recordings fit as
# FLAC or OGG (an hour of 44.1 kHz stereo FLAC is about 200-300 MiB, OGG far less).
MAX_FILE_MB = 200
MIB = 1024 * 1024

__all__ = ["MAX_FILE_MB", "Analysis", "Tagger", "check_audio_file"]


@dataclass
class Analysis:
    """One recording as the demo shows it.

    Attributes:
        labels: the `top_k` best labels and their clip scores, best first (`dass classify`).
        segments: runs of steps at or above the threshold (`dass timeline`'s CSV rows).
        timeline: the scores of every step (`dass timeline`'s PNG).
        source: what was read, e.g. "44100 Hz, 2 channels, 10.00 s (converted to 16 kHz mono)".
        clip_pooling: the clip readout used.
    """

    labels: dict[str, float]
    segments: list[Segment]
    timeline: Timeline
    source: str
    clip_pooling: str | None = None


def check_audio_file(path: str | os.PathLike, max_bytes: int, sampling_rate: int = 16000) -> str:
    """Refuse what the model cannot take before decoding it all; returns a description of the file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: empty, over `max_bytes`, not audio libsndfile or PyAV (`[media]`) can read, or without samples.
    """
    name = os.path.basename(os.fspath(path))
    size = os.path.getsize(path)  # FileNotFoundError names the path
    if size == 0:
        raise ValueError(f"{name} is empty (0 bytes); upload a recording")
    if size > max_bytes:
        raise ValueError(
            f"{name} is {size / MIB:.0f} MiB; this demo takes files up to {max_bytes / MIB:.0f} MiB "
            "(an hour of 16 kHz mono WAV is 110 MiB): compress it to FLAC or OGG, or cut it"
        )
    try:
        info = audio_info(path)
    except ValueError as error:
        raise ValueError(f"{name} is not an audio file this demo can read: {error}") from None
    if info.frames is not None and info.frames <= 0:
        raise ValueError(f"{name} holds no audio samples (truncated after its header?); upload a recording")
    converted = []
    if info.rate != sampling_rate:
        converted.append(f"{sampling_rate / 1000:g} kHz")
    if info.channels != 1:
        converted.append("mono")
    note = f" (converted to {' '.join(converted)})" if converted else ""
    channels = "1 channel" if info.channels == 1 else f"{info.channels} channels"
    duration = f", {info.seconds:.2f} s" if info.seconds is not None else ""
    return f"{info.rate} Hz, {channels}{duration}{note}"


class Tagger:
    """A DASS audio-classification model and its feature extractor, loaded once for every request.

    Args:
        model_dir: a converted DASS folder (or Hub id); None: the demo model bundled with the package.
        max_file_mb: the largest file `analyse` takes, in MiB.
    """

    def __init__(self, model_dir: str | os.PathLike | None = None, max_file_mb: float = MAX_FILE_MB):
        loaded = load_model(model_dir, dtype=None)
        self.model_dir = loaded.name_or_path
        self.model, self.extractor = loaded.model, loaded.extractor
        self.max_bytes = int(max_file_mb * MIB)
        bundled = not model_dir
        self.description = f"{'the bundled demo model' if bundled else self.model_dir}, {self.num_labels} labels"

    @property
    def num_labels(self) -> int:
        return self.model.config.num_labels

    def analyse(
        self,
        path: str | os.PathLike,
        top_k: int = 5,
        threshold: float = 0.5,
        smoothing: int = 1,
        show_progress: bool = False,
    ) -> Analysis:
        """Labels, timeline and segments of one audio file (any length, rate and channels): one decode, one forward.

        Args:
            path: the audio file.
            top_k: how many clip labels (clamped to the model's labels).
            threshold, smoothing: as `dass timeline --threshold --smoothing`.
            show_progress: tqdm bars while reading the file and over the model's layers (long inputs).

        Raises:
            FileNotFoundError, ValueError: bad input, with a message naming the file and the fix.
        """
        threshold = probability(threshold, "the threshold")
        source = check_audio_file(path, self.max_bytes, self.extractor.sampling_rate)
        result = classify_file(
            path, self.model, self.extractor, top_k=max(1, min(int(top_k), self.num_labels)), timeline=True,
            smoothing=smoothing, show_progress=show_progress,
        )  # fmt: skip
        return Analysis(
            labels={item["label"]: item["score"] for item in result.labels},
            segments=segments(result.timeline, threshold),
            timeline=result.timeline,
            source=source,
            clip_pooling=result.clip_pooling,
        )
