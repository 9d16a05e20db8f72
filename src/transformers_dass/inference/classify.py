"""Classify a recording: one decode, one forward, and from that forward both the clip labels and the timeline.

Every front end goes through here: `dass classify` (`classify_file`), `dass timeline` (`classify_file(...,
timeline=True)`), the `dass demo` page (both at once), and `dass tag` (`analyse_batch` on its batches). So a number
a user sees on one of them is the same number on the others.

The features are those of `pipeline()`: the extractor's defaults, so a recording shorter than the training length
(10.24 s) is zero-padded to it, as in training, and a longer one is kept whole (DASS has no positional embedding).
The clip score is a readout of the forward's frame scores (`model.readout`); the timeline is the same frame scores
at the steps that hold audio (steps past the end of a padded recording are dropped).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np
import torch

from ..model.readout import choose_clip_pooling, label_scores, read_out
from .features import (
    LONG_FILE_SECONDS,
    RecordingFeatures,
    file_features,
    waveform_features,
)
from .timeline import Timeline, check_timeline_model, timeline_of_frame_logits

__all__ = [
    "Analysis",
    "StepEmbeddings",
    "analyse_batch",
    "analyse_features",
    "classify_file",
    "classify_waveform",
    "timeline_of_file",
]


@dataclass
class StepEmbeddings:
    """The embedding of every 0.32 s step of one recording that holds audio (steps past the end of a padded
    recording are dropped, as in its timeline).

    Attributes:
        times: (steps, 2) float64 start and end in seconds: step `k` covers input frames `[32 k, min(32 k + 32,
            frames))` of the audio, frame `i` starting at `i * 10 ms` (`model.frame_step_times`).
        embeddings: (steps, hidden_size) float32, the last hidden state averaged over frequency at each step
            (`readout.step_hidden_states`: what `frame_logits` are read from); their mean over every step of the
            forward, padding included, is the clip embedding.
    """

    times: np.ndarray
    embeddings: torch.Tensor


@dataclass
class Analysis:
    """What one forward says about one recording.

    Attributes:
        labels: the `top_k` best labels, best first, each `{"label", "score", "clip_pooling"}` (`dass classify
            --json`'s items).
        clip_pooling: the clip readout used (`readout.choose_clip_pooling` for the recording's length).
        timeline: the scores of every step over the recording, when asked for; else None.
        duration_s: seconds of audio.
        embedding: the clip embedding, (hidden_size,) float32 (`DassModel`'s `pooler_output`), when asked for;
            else None.
        step_embeddings: the embedding of every step that holds audio, when asked for; else None.
    """

    labels: list[dict]
    clip_pooling: str
    timeline: Timeline | None
    duration_s: float
    embedding: torch.Tensor | None = None
    step_embeddings: StepEmbeddings | None = None


def analyse_batch(
    model,
    recordings: list[RecordingFeatures],
    top_k: int = 5,
    clip_pooling: str = "auto",
    timeline: bool = False,
    smoothing: int = 1,
    show_progress: bool = False,
    median_filter_s: float = 0.0,
    embeddings: bool = False,
    step_embeddings: bool = False,
) -> list[Analysis]:
    """Labels (and timelines) of recordings whose `input_values` have the same number of frames, in one forward.

    Args:
        model: a `DassForAudioClassification` (in any precision).
        recordings: features of each recording (`features.file_features`, `features.waveform_features`).
        top_k: labels per recording; between 1 and the model's labels.
        clip_pooling: "auto" (the model's `config.clip_pooling` for this length), "mean" or "max".
        timeline: also the per-step scores, smoothed over `smoothing` steps (odd; 1 = none), then median-filtered
            over `median_filter_s` seconds (0 = none; `postprocessing.median_filter`).
        show_progress: progress bar over the layers on the lean path of long inputs.
        embeddings: also each recording's clip embedding (`Analysis.embedding`), from the same forward.
        step_embeddings: also the embedding of each of its 0.32 s steps (`Analysis.step_embeddings`), likewise.
    """
    config = model.config
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= config.num_labels:
        raise ValueError(f"top_k must be between 1 and {config.num_labels} (the model's labels), got {top_k!r}")
    if timeline:
        check_timeline_model(model)
    lengths = {item.input_values.shape[0] for item in recordings}
    if len(lengths) != 1:
        raise ValueError(f"analyse_batch takes recordings of one length (frames); got {sorted(lengths)}")
    frames = lengths.pop()
    pooling = choose_clip_pooling(clip_pooling, config.clip_pooling, frames, config.training_length_frames)
    device = next(model.parameters()).device
    features = torch.stack([item.input_values for item in recordings]).to(device)
    readouts = read_out(
        model, features, [pooling], show_progress=show_progress, fine_steps=timeline, embeddings=embeddings,
        step_embeddings=step_embeddings,
    )  # fmt: skip
    scores, indices = label_scores(readouts.clip_logits[pooling], config.problem_type).float().topk(top_k, dim=-1)
    analyses = []
    for b, item in enumerate(recordings):
        labels = [
            {"label": config.id2label[i], "score": float(v), "clip_pooling": pooling}
            for v, i in zip(scores[b].tolist(), indices[b].tolist())
        ]
        steps = None
        if timeline:
            steps = timeline_of_frame_logits(
                model, readouts.fine_frame_logits[b], item.audio_frames, smoothing, median_filter_s=median_filter_s
            )
        embedding = readouts.embeddings[b].cpu() if embeddings else None
        per_step = None
        if step_embeddings:
            times = model.frame_step_times(item.audio_frames).numpy()
            # a copy: a view would keep the whole batch's steps, padding included, alive with it
            per_step = StepEmbeddings(times, readouts.step_embeddings[b, : len(times)].cpu().clone())
        analyses.append(
            Analysis(
                labels=labels, clip_pooling=pooling, timeline=steps, duration_s=item.duration_s, embedding=embedding,
                step_embeddings=per_step,
            )
        )
    return analyses


def analyse_features(model, recording: RecordingFeatures, **options) -> Analysis:
    """`analyse_batch` of one recording; the keyword options are those of `analyse_batch`."""
    return analyse_batch(model, [recording], **options)[0]


def classify_waveform(model, extractor, waveform, top_k: int, clip_pooling: str = "auto") -> list[dict]:
    """Scores of the `top_k` best labels of one mono waveform (samples,) at the extractor's rate, each item
    `{"label", "score", "clip_pooling"}` with the readout used."""
    recording = waveform_features(waveform, extractor)
    return analyse_features(model, recording, top_k=top_k, clip_pooling=clip_pooling).labels


def classify_file(
    path: str | os.PathLike,
    model,
    extractor,
    top_k: int = 5,
    clip_pooling: str = "auto",
    timeline: bool = False,
    smoothing: int = 1,
    show_progress: bool | None = False,
    long_file_seconds: float = LONG_FILE_SECONDS,
    median_filter_s: float = 0.0,
) -> Analysis:
    """Labels (and, with `timeline=True`, the timeline) of an audio file of any length, rate and channel count.

    The file is decoded once (whole, or in blocks beyond `long_file_seconds`: bounded memory) and run through the
    model once. `show_progress`: bars while reading in blocks and over the layers (None: when on a terminal).
    `smoothing` and `median_filter_s` post-process the timeline as in `analyse_batch`.

    Raises:
        FileNotFoundError, ValueError: a missing, empty, undecodable or too short file, naming it.
    """
    recording = file_features(path, extractor, long_file_seconds, show_progress=show_progress)
    return analyse_features(
        model, recording, top_k=top_k, clip_pooling=clip_pooling, timeline=timeline, smoothing=smoothing,
        show_progress=sys.stderr.isatty() if show_progress is None else show_progress, median_filter_s=median_filter_s,
    )  # fmt: skip


def timeline_of_file(
    path: str | os.PathLike,
    model,
    feature_extractor=None,
    smoothing: int = 1,
    show_progress: bool | None = None,
    median_filter_s: float = 0.0,
) -> Timeline:
    """The `Timeline` of a whole audio file, as `dass timeline FILE` computes it."""
    if feature_extractor is None:
        from ..model.feature_extraction_dass import DassFeatureExtractor

        feature_extractor = DassFeatureExtractor()
    return classify_file(
        path, model, feature_extractor, top_k=1, timeline=True, smoothing=smoothing, show_progress=show_progress,
        median_filter_s=median_filter_s,
    ).timeline
