"""The features of a recording, as every front end computes them: `file_features` decodes a file once.

`file_features(path, extractor)` gives `dass classify`'s features of a file: the extractor's defaults on the
whole waveform (clips shorter than its `max_length`, 10.24 s, padded to it, as in training), or for files longer
than `LONG_FILE_SECONDS` the same numbers computed block by block (`long_audio_features`, within float32
rounding), so that an hour of audio never sits in memory as a waveform.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from ..audio.fbank import FRAME_LENGTH_MS, frame_geometry, num_frames
from ..audio.io import audio_info, describe_source, load_audio
from ..audio.stream import DEFAULT_BLOCK_SECONDS, FbankStream, stream_audio
from ..model.feature_extraction_dass import DassFeatureExtractor

# Files longer than this are read in blocks instead of whole (10 minutes: 38 MB of 16 kHz float32 audio).
LONG_FILE_SECONDS = 600.0

__all__ = ["LONG_FILE_SECONDS", "RecordingFeatures", "file_features", "long_audio_features", "waveform_features"]


@dataclass
class RecordingFeatures:
    """One recording, ready for the model.

    Attributes:
        input_values: (frames, num_mel_bins) float32 normalised features; padded to the extractor's `max_length`
            when the recording is shorter.
        audio_frames: frames of actual audio (`<= frames`); the steps past them are padding.
        duration_s: seconds of audio at the extractor's rate.
        source_rate: the file's own rate in Hz, from its header; None for a waveform given as samples.
    """

    input_values: torch.Tensor
    audio_frames: int
    duration_s: float
    source_rate: int | None = None


def waveform_features(waveform: np.ndarray, extractor) -> RecordingFeatures:
    """The extractor's default features of a mono waveform at its rate (samples,): `dass classify`'s input."""
    rate = extractor.sampling_rate
    padded = extractor(waveform, sampling_rate=rate, return_tensors="pt", return_attention_mask=False)
    return RecordingFeatures(
        input_values=padded["input_values"][0],
        audio_frames=num_frames(waveform.shape[0], rate),
        duration_s=waveform.shape[0] / rate,
    )


def file_features(
    path: str | os.PathLike,
    extractor,
    long_file_seconds: float = LONG_FILE_SECONDS,
    show_progress: bool | None = None,
) -> RecordingFeatures:
    """Decode the file once and compute its features: whole up to `long_file_seconds`, in blocks beyond.

    Raises:
        FileNotFoundError, ValueError: a missing, empty, undecodable or too short file, naming it.
    """
    rate, seconds = _file_header(path)
    if seconds is not None and seconds > long_file_seconds:
        features = long_audio_features(path, extractor, show_progress=show_progress)
        return RecordingFeatures(features, features.shape[0], seconds, rate)
    recording = waveform_features(load_audio(path, sampling_rate=extractor.sampling_rate), extractor)
    recording.source_rate = rate
    return recording


def _file_header(path) -> tuple[int | None, float | None]:
    """(rate in Hz, seconds) from the file's header; (None, None) when it cannot be read (the decoder then says
    why)."""
    try:
        info = audio_info(path)
    except Exception:  # noqa: BLE001 - load_audio raises the real error, with its message, right after
        return None, None
    return info.rate, info.seconds


def long_audio_features(
    path: str | os.PathLike,
    feature_extractor: DassFeatureExtractor | None = None,
    block_seconds: float = DEFAULT_BLOCK_SECONDS,
    show_progress: bool | None = None,
) -> torch.Tensor:
    """Normalised DASS features of a whole audio file, read in blocks.

    Args:
        path: a file libsndfile or PyAV (`[media]`) can decode (any rate and channel count: downmixed and resampled;
            the first audio stream of a container with several).
        feature_extractor: whose settings to use (rate, mel bins, normalisation); the default extractor when
            None. Its `max_length` is ignored: every frame is kept, none is padded.
        block_seconds: seconds of file audio decoded at a time.
        show_progress: a tqdm bar over the two passes; None shows it when stderr is a terminal.

    Returns:
        (frames, num_mel_bins) float32 with `frames = 1 + (samples - 400) // 160` at 16 kHz: the
        `input_values` of `feature_extractor(load_audio(path), max_length=None)[0]`; add the batch
        dimension with `.unsqueeze(0)`.
    """
    extractor = feature_extractor if feature_extractor is not None else DassFeatureExtractor()
    rate = extractor.sampling_rate
    name = describe_source(path)
    bar = _progress_bar(path, show_progress)
    try:
        # Pass 1: the number of samples and the clip mean, which the feature extractor removes first.
        count, total = 0, 0.0
        for block in stream_audio(path, rate, block_seconds, progress=bar.update):
            count += block.shape[0]
            total += float(block.sum(dtype=np.float64))
        min_samples = frame_geometry(rate)[0]
        if count < min_samples:
            raise ValueError(
                f"{name} has only {count} samples at {rate} Hz; DASS needs at least {min_samples} (one "
                f"{FRAME_LENGTH_MS} ms window). Pad short recordings with silence."
            )
        mean = float(np.float32(total / count))

        # Pass 2: the frames, straight into the output (pass 1 already warned if the file is truncated).
        features = torch.empty(num_frames(count, rate), extractor.num_mel_bins)
        stream = FbankStream(extractor.num_mel_bins, rate, offset=mean)
        written = 0
        for block in stream_audio(path, rate, block_seconds, progress=bar.update, warn_truncated=False):
            frames = stream.push(block)
            features[written : written + frames.shape[0]] = frames
            written += frames.shape[0]
        if written != features.shape[0]:
            raise RuntimeError(
                f"{name} decoded to {written} frames on the second pass, {features.shape[0]} on the first"
            )
    finally:
        bar.close()
    if extractor.do_normalize:
        features.sub_(extractor.mean).div_(extractor.std * 2)
    return features


def _progress_bar(path, show: bool | None):
    """A tqdm bar over both passes, in file frames (`disable=None`: only on a terminal)."""
    from tqdm.auto import tqdm

    try:
        frames = audio_info(path).frames
    except Exception:  # the stream raises the real error with its message
        frames = None
    total = 2 * frames if frames and frames > 0 else None
    disable = None if show is None else not show
    return tqdm(total=total, desc="reading audio (2 passes)", unit="frame", unit_scale=True, disable=disable)
