"""Feature extractor for DASS: Kaldi-compatible log-mel filterbanks, as the DASS authors compute them.

The authors' `make_features` removes the clip's mean, calls `torchaudio.compliance.kaldi.fbank`
(25 ms Hann window, 10 ms shift, 128 mel bins, no dither, no energy), pads or cuts the result to
1024 frames with zero rows and normalises it with the AudioSet statistics. This module computes the
same numbers in plain torch, so torchaudio is not needed (it stays available as `backend="torchaudio"`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from transformers import BatchFeature, SequenceFeatureExtractor
from transformers.utils import logging

from ..audio.fbank import (
    AUDIOSET_MEAN,
    AUDIOSET_STD,
    FRAME_LENGTH_MS,
    check_sampling_rate,
    fbank_into,
    frame_geometry,
    hann_window,
    kaldi_mel_filters,
    num_frames,
    torchaudio_fbank,
)
from ..utils.checks import check_bool, finite_float, positive_int
from .auto_module import AUTO_MAP, write_auto_module

logger = logging.get_logger(__name__)

PCM_SCALES = {torch.int16: 32768.0, torch.int32: 2.0**31}
BACKENDS = ("torch", "torchaudio")
RESAMPLE_HINT = (
    "Resample it first, e.g. `transformers_dass.audio.io.load_audio(path)` (resamples to 16 kHz on load), "
    "`librosa.resample` or `torchaudio.functional.resample`."
)
_USE_DEFAULT = object()


def _is_batch(raw_speech) -> bool:
    """True for a list/tuple of clips, False for a single clip (array, tensor or list of numbers)."""
    return (
        isinstance(raw_speech, (list, tuple))
        and len(raw_speech) > 0
        and isinstance(raw_speech[0], (np.ndarray, torch.Tensor, list, tuple))
    )


def _as_tensor(clip, where: str) -> torch.Tensor:
    """One clip (ndarray, tensor or list of numbers) as a CPU float32 tensor; integer PCM is scaled to [-1, 1)."""
    if isinstance(clip, (list, tuple)):
        try:
            clip = np.asarray(clip, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where} could not be read as a list of numbers: {err}") from err
    if isinstance(clip, np.ndarray):
        if clip.dtype.kind not in "iuf":
            raise ValueError(f"{where} has unsupported dtype {clip.dtype}; pass float32/float64 or int16/int32 PCM")
        # torch.from_numpy warns on read-only arrays (e.g. memory-mapped files); we never write, but copy to stay quiet.
        clip = torch.from_numpy(np.ascontiguousarray(clip) if clip.flags.writeable else clip.copy())
    if not isinstance(clip, torch.Tensor):
        raise TypeError(
            f"{where} must be a numpy array, torch tensor or list of floats, got {type(clip).__name__}; "
            "a batch is a list of 1-D arrays"
        )
    clip = clip.detach().cpu()
    if clip.dtype in PCM_SCALES:
        return clip.to(torch.float32) / PCM_SCALES[clip.dtype]
    if not clip.is_floating_point():
        dtype = str(clip.dtype).removeprefix("torch.")
        raise ValueError(f"{where} has unsupported dtype {dtype}; pass float audio in [-1, 1] or int16/int32 PCM")
    return clip.to(torch.float32)


def _as_mono(clip: torch.Tensor, where: str) -> torch.Tensor:
    """A 1-D view of clip; a (1, N) or (N, 1) array counts as mono, any other 2-D shape is refused."""
    if clip.ndim == 2 and 1 in clip.shape:
        return clip.reshape(-1)
    if clip.ndim == 2:
        channel_axis = 0 if clip.shape[0] <= clip.shape[1] else 1
        raise ValueError(
            f"{where} has shape {tuple(clip.shape)}: DASS takes mono audio, one 1-D waveform per clip. "
            f"If this is multichannel audio, downmix it first, e.g. `x.mean(axis={channel_axis})`; "
            "to pass a batch, use a list of 1-D arrays."
        )
    if clip.ndim != 1:
        raise ValueError(
            f"{where} has shape {tuple(clip.shape)}; expected a 1-D waveform (samples,). "
            "To pass a batch, use a list of 1-D arrays."
        )
    return clip


def _check_samples(clip: torch.Tensor, where: str, min_samples: int, sampling_rate: int) -> None:
    """Refuse clips shorter than one analysis window and clips with NaN or infinite samples."""
    if clip.shape[0] < min_samples:
        state = "is empty (0 samples)" if clip.shape[0] == 0 else f"has only {clip.shape[0]} samples"
        raise ValueError(
            f"{where} {state}; DASS needs at least {min_samples} samples (one {FRAME_LENGTH_MS} ms window at "
            f"{sampling_rate} Hz). Pad short clips, e.g. `np.pad(x, (0, {min_samples} - len(x)))`."
        )
    # Any NaN or inf makes the sum non-finite; only an overflowing sum needs the full check.
    if not math.isfinite(float(clip.sum())) and not bool(torch.isfinite(clip).all()):
        raise ValueError(f"{where} contains NaN or infinite samples; clean it first, e.g. `np.nan_to_num(x)`.")


# ----------------------------------------------------------------------------------------------------------------
# Feature extractor
# ----------------------------------------------------------------------------------------------------------------


class DassFeatureExtractor(SequenceFeatureExtractor):
    r"""DASS feature extractor: mean-removed waveform -> Kaldi log-mel fbank -> pad (or cut) -> normalise.

    Output `input_values` is (batch, frames, num_mel_bins) float32, the layout `DassModel` takes.

    Args:
        feature_size: mel bins per frame; defaults to (and must equal) `num_mel_bins`.
        sampling_rate: rate in Hz the model expects; other rates are refused, not resampled.
        num_mel_bins: Kaldi mel filters.
        max_length: the model's training length in frames (1024 frames = 10.24 s). Shorter clips are padded to it
            with zero rows, as in training; longer ones are kept whole (DASS takes any length) unless a call asks
            for `truncation=True`. None: no padding either, every clip as long as its audio.
        padding_value: raw (pre-normalisation) fbank value of padded frames; the authors use 0.
        do_normalize: apply `(x - mean) / (2 * std)`.
        mean, std: the normalisation statistics (AudioSet values of the DASS authors).
        return_attention_mask: default for `__call__`: also return which frames belong to each clip (its audio
            and its padding to `max_length`) as opposed to padding added to batch it with longer clips.
            `DassForAudioClassification` reads it to give every clip of a batch the answer it gets alone.
        backend: "torch" (built in) or "torchaudio" (`torchaudio.compliance.kaldi.fbank`, must be installed).
    """

    model_input_names = ["input_values"]

    def __init__(
        self,
        feature_size: int | None = None,
        sampling_rate: int = 16000,
        num_mel_bins: int = 128,
        max_length: int | None = 1024,
        padding_value: float = 0.0,
        do_normalize: bool = True,
        mean: float = AUDIOSET_MEAN,
        std: float = AUDIOSET_STD,
        return_attention_mask: bool = True,
        backend: str = "torch",
        **kwargs,
    ):
        num_mel_bins = positive_int(num_mel_bins, "num_mel_bins")
        feature_size = num_mel_bins if feature_size is None else positive_int(feature_size, "feature_size")
        kwargs.pop("auto_map", None)  # always written by `to_dict` (see auto_module.py)
        if feature_size != num_mel_bins:
            raise ValueError(f"feature_size ({feature_size}) must equal num_mel_bins ({num_mel_bins})")
        super().__init__(
            feature_size=feature_size,
            sampling_rate=check_sampling_rate(sampling_rate),
            padding_value=finite_float(padding_value, "padding_value"),
            return_attention_mask=check_bool(return_attention_mask, "return_attention_mask"),
            **kwargs,
        )
        if self.padding_side != "right":
            raise ValueError(f"DassFeatureExtractor only pads on the right, got padding_side={self.padding_side!r}")
        self.num_mel_bins = num_mel_bins
        self.max_length = None if max_length is None else positive_int(max_length, "max_length")
        self.do_normalize = check_bool(do_normalize, "do_normalize")
        self.mean = finite_float(mean, "mean")
        self.std = finite_float(std, "std")
        if self.std <= 0:
            raise ValueError(f"std must be positive, got {std!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend
        self._kernel_cache: dict = {}
        self._warned_cut = False

    def to_dict(self) -> dict:
        """Serialisable constructor arguments; the cached window and filters are left out."""
        output = super().to_dict()
        output.pop("_kernel_cache", None)
        output.pop("_warned_cut", None)
        output["auto_map"] = {"AutoFeatureExtractor": AUTO_MAP["AutoFeatureExtractor"]}
        return output

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`FeatureExtractionMixin.save_pretrained`, plus `dass_auto.py`, the module its `auto_map` names."""
        result = super().save_pretrained(save_directory, *args, **kwargs)
        write_auto_module(save_directory)
        return result

    @classmethod
    def register_for_auto_class(cls, auto_class="AutoFeatureExtractor"):
        """A no-op, as `DassConfig.register_for_auto_class`: `auto_map` is always written."""

    def _kernels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Cached (window (window_size,), mel filters (num_mel_bins, fft_size // 2 + 1)) for the current settings."""
        key = (self.num_mel_bins, self.sampling_rate)
        if key not in self._kernel_cache:
            window_size, _, fft_size = frame_geometry(self.sampling_rate)
            filters = kaldi_mel_filters(self.num_mel_bins, fft_size, self.sampling_rate)
            self._kernel_cache = {key: (hann_window(window_size), filters)}
        return self._kernel_cache[key]

    def __call__(
        self,
        raw_speech,
        sampling_rate: int | None = None,
        max_length=_USE_DEFAULT,
        truncation: bool = False,
        return_tensors=None,
        return_attention_mask: bool | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Features of one clip or a batch of clips.

        Args:
            raw_speech: a 1-D waveform (numpy float or int16/int32 PCM, torch tensor, list of floats) or a
                list/tuple of them; mono, at `self.sampling_rate`.
            sampling_rate: rate of `raw_speech`; checked against `self.sampling_rate` (pass it).
            max_length: shortest clip in frames (padded up to it); defaults to `self.max_length`; None pads nothing.
            truncation: also cut longer clips to `max_length` frames (training, parity with the authors' fixed
                10 s inputs). Each call that cuts logs the seconds of audio it dropped.
            return_tensors: "pt", "np" or None (numpy arrays).
            return_attention_mask: defaults to `self.return_attention_mask`.

        Returns:
            BatchFeature with "input_values" (batch, frames, num_mel_bins) float32, frames = the longest clip after
            padding/cutting, and, if asked, "attention_mask" (batch, frames) int32: 1 for the frames of each clip
            (audio and padding to `max_length`), 0 for the padding that batches it with longer clips.
        """
        self._check_call_rate(sampling_rate)
        if kwargs:
            logger.warning_once(f"DassFeatureExtractor ignores the arguments {sorted(kwargs)}")
        waveforms = self._waveforms(raw_speech)
        lengths = [num_frames(w.shape[0], self.sampling_rate) for w in waveforms]
        if max_length is _USE_DEFAULT:
            max_length = self.max_length
        if max_length is not None:
            max_length = positive_int(max_length, "max_length")
        if check_bool(truncation, "truncation") and max_length is None:
            raise ValueError("truncation=True cuts clips to max_length frames: pass max_length (e.g. 1024 = 10.24 s)")
        if max_length is None:
            clip_lengths = lengths
        elif truncation:
            clip_lengths = [max_length] * len(lengths)
            self._log_cut(lengths, max_length)
        else:
            clip_lengths = [max(length, max_length) for length in lengths]

        features, mask = self._batch_features(waveforms, lengths, clip_lengths)
        data = {"input_values": features.numpy()}
        if self.return_attention_mask if return_attention_mask is None else return_attention_mask:
            data["attention_mask"] = mask.numpy()
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _check_call_rate(self, sampling_rate) -> None:
        """Refuse a wrong sampling rate; warn once when none is given."""
        if sampling_rate is None:
            logger.warning_once(
                f"DassFeatureExtractor was called without `sampling_rate`; assuming {self.sampling_rate} Hz. "
                "Pass `sampling_rate=` so that audio at another rate is caught instead of giving wrong features."
            )
        elif sampling_rate != self.sampling_rate:
            raise ValueError(
                f"This DASS model expects audio sampled at {self.sampling_rate} Hz, got {sampling_rate} Hz. "
                + RESAMPLE_HINT
            )

    def _waveforms(self, raw_speech) -> list[torch.Tensor]:
        """Validated mono float32 waveforms [(samples,), ...], one per clip."""
        clips = raw_speech if _is_batch(raw_speech) else [raw_speech]
        min_samples = frame_geometry(self.sampling_rate)[0]
        waveforms = []
        for index, clip in enumerate(clips):
            where = f"clip {index}" if len(clips) > 1 else "the audio"
            waveform = _as_mono(_as_tensor(clip, where), where)
            _check_samples(waveform, where, min_samples, self.sampling_rate)
            waveforms.append(waveform)
        return waveforms

    def _log_cut(self, lengths: list[int], max_length: int) -> None:
        """Say how much audio `truncation=True` drops: a warning the first time, at info level afterwards (a
        training run cuts every batch)."""
        cut = [length - max_length for length in lengths if length > max_length]
        if not cut:
            return
        _, shift, _ = frame_geometry(self.sampling_rate)
        message = (
            f"truncation=True cut {len(cut)} of {len(lengths)} clips to max_length={max_length} frames "
            f"({max_length * shift / self.sampling_rate:.2f} s), dropping {sum(cut) * shift / self.sampling_rate:.2f} s "
            "of audio. Leave truncation off to keep whole recordings (DASS takes any length)."
        )
        if self._warned_cut:
            logger.info(message)
        else:
            logger.warning(message + " Later cuts by this extractor are logged at info level.")
            self._warned_cut = True

    def _batch_features(
        self, waveforms: list[torch.Tensor], lengths: list[int], clip_lengths: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (batch, max(clip_lengths), bins) float32, normalised if asked, and the clip mask (same first
        two dims) int32: clip `row` gets min(lengths[row], clip_lengths[row]) frames of audio, zero-row padding
        up to clip_lengths[row] (mask 1), then batch padding (mask 0)."""
        target = max(clip_lengths)
        features = torch.full((len(waveforms), target, self.num_mel_bins), self.padding_value, dtype=torch.float32)
        mask = torch.zeros(len(waveforms), target, dtype=torch.int32)
        for row, (waveform, length, clip_length) in enumerate(zip(waveforms, lengths, clip_lengths)):
            self._fbank_into(features[row, : min(length, clip_length)], waveform)
            mask[row, :clip_length] = 1
        if self.do_normalize:
            features.sub_(self.mean).div_(self.std * 2)
        return features, mask

    def _fbank_into(self, out: torch.Tensor, waveform: torch.Tensor) -> None:
        """Write the first out.shape[0] fbank frames (frames, bins) of the mean-removed waveform (samples,) into out."""
        mean = waveform.mean()
        if self.backend == "torchaudio":
            fbank = torchaudio_fbank(waveform - mean, self.num_mel_bins, self.sampling_rate)
            out.copy_(fbank[: out.shape[0]])
            return
        window, filters = self._kernels()
        window_size, window_shift, _ = frame_geometry(self.sampling_rate)
        # The mean is over the whole clip, but only the samples of the kept frames need centring.
        used = (out.shape[0] - 1) * window_shift + window_size
        fbank_into(out, waveform[:used] - mean, window, filters, window_shift)


__all__ = ["DassFeatureExtractor"]
