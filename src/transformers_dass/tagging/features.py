"""Decoding, resampling and features of each input, in DataLoader worker processes while the model runs.

`InputFeatures[i]` reads input i the way `dass classify` reads a file (`audio_io.load_audio`, then the feature
extractor with its defaults: clips shorter than `max_length`, 10.24 s, padded to it) and, when segments are asked
for, also the unpadded features that `dass timeline` runs on. Files longer than `long_file_seconds` are read block
by block (`long_audio.long_audio_features`, the same numbers within float32 rounding, in bounded memory). An input
that cannot be used gives a `DecodedInput` with its error instead of raising, so that one bad file does not stop
an archive.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import soundfile
import torch

from ..audio_io import load_audio
from ..feature_extraction_dass import num_frames
from .inputs import InputList

# Files longer than this are read in blocks instead of whole (10 minutes: 38 MB of 16 kHz float32 audio).
LONG_FILE_SECONDS = 600.0
# The errors a bad input raises (missing, empty, undecodable, no samples, NaN, too short, unknown value).
INPUT_ERRORS = (OSError, ValueError, RuntimeError, EOFError, TypeError, soundfile.SoundFileError)

__all__ = ["DecodedInput", "InputFeatures", "LONG_FILE_SECONDS", "worker_init"]


@dataclass
class DecodedInput:
    """One input, ready for the model (or its error).

    Attributes:
        position: its index in the run's input list.
        duration_s: seconds of audio read (after decoding, before padding); None when unreadable.
        sample_rate: the file's own rate in Hz; None when unreadable.
        input_values: (frames, num_mel_bins) float32: `dass classify`'s features (padded to `max_length`).
        timeline_values: (frames', num_mel_bins) unpadded features for the segments, only when segments are asked
            for and the clip was padded (otherwise the segments come from `input_values` themselves).
        error: why the input could not be used, naming it; None on success.
    """

    position: int
    duration_s: float | None = None
    sample_rate: int | None = None
    input_values: torch.Tensor | None = None
    timeline_values: torch.Tensor | None = None
    error: str | None = None


class InputFeatures(torch.utils.data.Dataset):
    """Map-style dataset over `positions` of an `InputList`: item k is the `DecodedInput` of input positions[k]."""

    def __init__(
        self,
        inputs: InputList,
        positions: list[int],
        feature_extractor,
        with_timeline: bool = False,
        long_file_seconds: float = LONG_FILE_SECONDS,
    ):
        self.inputs = inputs
        self.positions = positions
        self.extractor = feature_extractor
        self.with_timeline = with_timeline
        self.long_file_seconds = long_file_seconds

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> DecodedInput:
        position = self.positions[index]
        item = self.inputs.items[position]
        name = item.path or item.id
        try:
            if item.row is None:
                return self._file(position, item.path)
            return self._dataset_row(position, item.row)
        except INPUT_ERRORS as error:
            message = str(error) if name in str(error) else f"{name}: {error}"
            return DecodedInput(position=position, error=message)

    def _file(self, position: int, path: str) -> DecodedInput:
        rate, duration = _file_info(path)
        if duration is not None and duration > self.long_file_seconds:
            from ..long_audio import long_audio_features

            features = long_audio_features(path, self.extractor, show_progress=False)
            return DecodedInput(position=position, duration_s=duration, sample_rate=rate, input_values=features)
        return self._waveform(position, load_audio(path, sampling_rate=self.extractor.sampling_rate), rate)

    def _dataset_row(self, position: int, row: int) -> DecodedInput:
        from ..data.decoding import decode_audio

        value = self.inputs.dataset[row][self.inputs.audio_column]
        rate = _value_rate(value)
        return self._waveform(position, decode_audio(value, self.extractor.sampling_rate), rate)

    def _waveform(self, position: int, waveform, rate: int | None) -> DecodedInput:
        """Features of a 16 kHz waveform (samples,), as `dass classify` computes them."""
        extractor = self.extractor
        padded = extractor(waveform, sampling_rate=extractor.sampling_rate, return_tensors="pt", return_attention_mask=False)
        features = padded["input_values"][0]
        audio_frames = num_frames(waveform.shape[0], extractor.sampling_rate)
        duration = waveform.shape[0] / extractor.sampling_rate
        item = DecodedInput(position=position, duration_s=duration, sample_rate=rate, input_values=features)
        if self.with_timeline and audio_frames < features.shape[0]:
            unpadded = extractor(
                waveform, sampling_rate=extractor.sampling_rate, max_length=None, return_tensors="pt",
                return_attention_mask=False,
            )  # fmt: skip
            item.timeline_values = unpadded["input_values"][0]
        return item


def _file_info(path: str) -> tuple[int | None, float | None]:
    """(rate in Hz, seconds) from the file's header; (None, None) when it cannot be read (load_audio says why)."""
    try:
        info = soundfile.info(os.fspath(path))
    except Exception:  # noqa: BLE001 - the decoder raises the real error, with its message, right after
        return None, None
    return info.samplerate, (info.frames / info.samplerate if info.samplerate else None)


def _value_rate(value) -> int | None:
    """The original rate of a dataset audio value (encoded bytes, a path, or a decoded dict)."""
    try:
        if isinstance(value, dict):
            if value.get("sampling_rate"):
                return int(value["sampling_rate"])
            value = value.get("bytes") or value.get("path")
        source = io.BytesIO(value) if isinstance(value, (bytes, bytearray)) else os.fspath(value)
        return soundfile.info(source).samplerate
    except Exception:  # noqa: BLE001 - decode_audio raises the real error
        return None


def worker_init(_worker_id: int) -> None:
    """One thread per DataLoader worker: the workers run side by side, and the model's process has the cores."""
    torch.set_num_threads(1)
