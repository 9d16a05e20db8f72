"""Decoding, resampling and features of each input, in DataLoader worker processes while the model runs.

`InputFeatures[i]` reads input i the way `dass classify` reads a file (`inference.features`: the feature extractor
with its defaults, clips shorter than `max_length`, 10.24 s, padded to it; files longer than `long_file_seconds`
read block by block, the same numbers within float32 rounding, in bounded memory). An input that cannot be used
gives a `DecodedInput` with its error instead of raising, so that one bad file does not stop an archive.
"""

from __future__ import annotations

from dataclasses import dataclass

import soundfile
import torch

from ..audio.decoding import decode_audio
from ..audio.io import audio_info
from ..inference.features import (
    LONG_FILE_SECONDS,
    RecordingFeatures,
    file_features,
    waveform_features,
)
from .inputs import InputList

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
        audio_frames: the frames of `input_values` that hold audio (the rest is padding).
        error: why the input could not be used, naming it; None on success.
    """

    position: int
    duration_s: float | None = None
    sample_rate: int | None = None
    input_values: torch.Tensor | None = None
    audio_frames: int | None = None
    error: str | None = None


class InputFeatures(torch.utils.data.Dataset):
    """Map-style dataset over `positions` of an `InputList`: item k is the `DecodedInput` of input positions[k]."""

    def __init__(
        self,
        inputs: InputList,
        positions: list[int],
        feature_extractor,
        long_file_seconds: float = LONG_FILE_SECONDS,
    ):
        self.inputs = inputs
        self.positions = positions
        self.extractor = feature_extractor
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
        recording = file_features(path, self.extractor, self.long_file_seconds, show_progress=False)
        return _decoded(position, recording, recording.source_rate)

    def _dataset_row(self, position: int, row: int) -> DecodedInput:
        value = self.inputs.dataset[row][self.inputs.audio_column]
        rate = _value_rate(value)
        return _decoded(position, waveform_features(decode_audio(value, self.extractor.sampling_rate), self.extractor), rate)


def _decoded(position: int, recording: RecordingFeatures, rate: int | None) -> DecodedInput:
    return DecodedInput(
        position=position,
        duration_s=recording.duration_s,
        sample_rate=rate,
        input_values=recording.input_values,
        audio_frames=recording.audio_frames,
    )


def _value_rate(value) -> int | None:
    """The original rate of a dataset audio value (encoded bytes, a path, or a decoded dict)."""
    try:
        if isinstance(value, dict):
            if value.get("sampling_rate"):
                return int(value["sampling_rate"])
            value = value.get("bytes") or value.get("path")
        return audio_info(value).rate
    except Exception:  # noqa: BLE001 - decode_audio raises the real error
        return None


def worker_init(_worker_id: int) -> None:
    """One thread per DataLoader worker: the workers run side by side, and the model's process has the cores."""
    torch.set_num_threads(1)
