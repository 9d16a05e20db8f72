"""The Kaldi log-mel filterbank DASS is trained on, in plain torch: one home for the signal processing.

`kaldi_fbank` computes what the DASS authors get from `torchaudio.compliance.kaldi.fbank` (25 ms Hann window,
10 ms shift, 128 mel bins, no dither, no energy); `fbank_into` writes the same frames into a preallocated
tensor, which the feature extractor, the block-wise stream (`audio.stream.FbankStream`) and the NIAH haystacks
use. `torchaudio_fbank` is the authors' own call, for `DassFeatureExtractor(backend="torchaudio")`.
"""

from __future__ import annotations

import math

import torch

from ..utils.checks import positive_int
from ..utils.optional import require

FRAME_LENGTH_MS = 25
FRAME_SHIFT_MS = 10
PREEMPHASIS = 0.97
LOW_FREQ_HZ = 20.0
# Kaldi floors mel energies at float32 epsilon before the log.
LOG_FLOOR = float(torch.finfo(torch.float32).eps)
# Frames per FFT batch: bounds the temporaries to about 100 MB whatever the clip length; much smaller
# batches are slower because each FFT call has a fixed set-up cost.
CHUNK_FRAMES = 16384
# AudioSet statistics of the fbank, with which DASS (as AST) normalises its input: (x - mean) / (2 * std).
AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974

__all__ = [
    "AUDIOSET_MEAN",
    "AUDIOSET_STD",
    "LOG_FLOOR",
    "check_sampling_rate",
    "fbank_into",
    "frame_geometry",
    "hann_window",
    "kaldi_fbank",
    "kaldi_mel_filters",
    "num_frames",
    "torchaudio_fbank",
]


def check_sampling_rate(value) -> int:
    """A positive integer rate high enough for a 25 ms window of at least 2 samples above 20 Hz."""
    value = positive_int(value, "sampling_rate")
    if value < 80:
        raise ValueError(f"sampling_rate must be at least 80 Hz, got {value}")
    return value


def frame_geometry(sampling_rate: int) -> tuple[int, int, int]:
    """Kaldi framing in samples: (window size, window shift, FFT size = window rounded up to a power of two)."""
    window_size = sampling_rate * FRAME_LENGTH_MS // 1000
    window_shift = sampling_rate * FRAME_SHIFT_MS // 1000
    fft_size = 1 << (window_size - 1).bit_length()
    return window_size, window_shift, fft_size


def num_frames(num_samples: int, sampling_rate: int = 16000) -> int:
    """Frames Kaldi makes from `num_samples` with snip_edges=True: 1 + (N - window) // shift, or 0 if N < window."""
    window_size, window_shift, _ = frame_geometry(sampling_rate)
    if num_samples < window_size:
        return 0
    return 1 + (num_samples - window_size) // window_shift


def kaldi_mel_filters(num_mel_bins: int, fft_size: int, sampling_rate: int) -> torch.Tensor:
    """Kaldi's triangular mel filters, (num_mel_bins, fft_size // 2 + 1) float32.

    Triangles are linear in Kaldi's mel scale 1127 * ln(1 + f / 700), span LOW_FREQ_HZ to Nyquist and are
    evaluated on the fft_size // 2 bins below Nyquist; the Nyquist column is zero. The arithmetic follows
    torchaudio's float32 order so the filters match its own.
    """
    mel_low = 1127.0 * math.log(1.0 + LOW_FREQ_HZ / 700.0)
    mel_high = 1127.0 * math.log(1.0 + (sampling_rate / 2) / 700.0)
    mel_step = (mel_high - mel_low) / (num_mel_bins + 1)

    band = torch.arange(num_mel_bins).unsqueeze(1)  # (bins, 1)
    left = mel_low + band * mel_step
    center = mel_low + (band + 1.0) * mel_step
    right = mel_low + (band + 2.0) * mel_step

    bin_hz = (sampling_rate / fft_size) * torch.arange(float(fft_size // 2))
    bin_mel = (1127.0 * (1.0 + bin_hz / 700.0).log()).unsqueeze(0)  # (1, fft_size // 2)

    rising = (bin_mel - left) / (center - left)
    falling = (right - bin_mel) / (right - center)
    filters = torch.clamp_min(torch.minimum(rising, falling), 0.0)
    return torch.nn.functional.pad(filters, (0, 1)).to(torch.float32)


def hann_window(window_size: int) -> torch.Tensor:
    """Symmetric Hann window, (window_size,) float32, as Kaldi's "hanning" window type."""
    return torch.hann_window(window_size, periodic=False, dtype=torch.float32)


def _log_mel_frames_into(
    out: torch.Tensor, frames: torch.Tensor, window: torch.Tensor, filters: torch.Tensor, scratch: torch.Tensor
) -> None:
    """Log mel energies of raw frames (n, window_size) into out (n, num_mel_bins).

    scratch is (>= n, fft_size) float32 whose columns from window_size on are zero: the FFT's zero padding.
    The time-domain steps keep torchaudio's operation order (centre, pre-emphasise, window) because the
    low mel bins, where pre-emphasis removes most of the energy, are sensitive to float32 rounding.
    """
    n, width = frames.shape
    padded = scratch[:n]
    emphasised = padded[:, :width]
    centred = frames - frames.mean(dim=1, keepdim=True)
    # Kaldi pre-emphasis x[i] - 0.97 * x[i-1] treats the first sample as its own predecessor.
    torch.mul(centred[:, :-1], PREEMPHASIS, out=emphasised[:, 1:])
    torch.mul(centred[:, :1], PREEMPHASIS, out=emphasised[:, :1])
    torch.sub(centred, emphasised, out=emphasised)
    emphasised.mul_(window)
    spectrum = torch.view_as_real(torch.fft.rfft(padded))  # (n, fft_size // 2 + 1, 2)
    # re^2 + im^2 rather than abs().pow(2): same power, much cheaper than the complex abs.
    power = spectrum[..., 0].square()
    power.addcmul_(spectrum[..., 1], spectrum[..., 1])
    torch.matmul(power, filters.T, out=out)
    out.clamp_min_(LOG_FLOOR).log_()


def fbank_into(
    out: torch.Tensor, waveform: torch.Tensor, window: torch.Tensor, filters: torch.Tensor, window_shift: int
) -> None:
    """Write the first out.shape[0] Kaldi fbank frames of waveform (samples,) into out (frames, num_mel_bins)."""
    if out.shape[0] == 0:
        return
    frames = waveform.unfold(0, window.shape[0], window_shift)[: out.shape[0]]  # a view, (frames, window_size)
    scratch = torch.zeros(min(CHUNK_FRAMES, frames.shape[0]), 2 * (filters.shape[1] - 1))
    for start in range(0, frames.shape[0], CHUNK_FRAMES):
        stop = start + CHUNK_FRAMES
        _log_mel_frames_into(out[start:stop], frames[start:stop], window, filters, scratch)


def kaldi_fbank(waveform: torch.Tensor, num_mel_bins: int = 128, sampling_rate: int = 16000) -> torch.Tensor:
    """Kaldi log-mel filterbank of a mono waveform, as the DASS authors call torchaudio's `kaldi.fbank`.

    Hann window of 25 ms, 10 ms shift, snip_edges, per-frame DC removal, pre-emphasis 0.97, power spectrum,
    no dither, no energy term. The clip mean is NOT removed here (the feature extractor does it).

    Args:
        waveform: (samples,) float tensor in [-1, 1]; computed in float32.
        num_mel_bins: mel filters.
        sampling_rate: Hz; sets the window (25 ms) and shift (10 ms) in samples.

    Returns:
        (frames, num_mel_bins) float32 with frames = 1 + (samples - window) // shift, or 0 frames for a clip
        shorter than one window.
    """
    num_mel_bins = positive_int(num_mel_bins, "num_mel_bins")
    sampling_rate = check_sampling_rate(sampling_rate)
    if not isinstance(waveform, torch.Tensor) or waveform.ndim != 1 or not waveform.is_floating_point():
        raise ValueError("kaldi_fbank expects a 1-D floating point torch.Tensor (samples,)")
    waveform = waveform.detach().to(device="cpu", dtype=torch.float32)
    window_size, window_shift, fft_size = frame_geometry(sampling_rate)
    window = hann_window(window_size)
    filters = kaldi_mel_filters(num_mel_bins, fft_size, sampling_rate)
    out = torch.empty(num_frames(waveform.shape[0], sampling_rate), num_mel_bins)
    fbank_into(out, waveform, window, filters, window_shift)
    return out


def torchaudio_fbank(waveform: torch.Tensor, num_mel_bins: int, sampling_rate: int) -> torch.Tensor:
    """The authors' exact call of torchaudio's kaldi.fbank on a (samples,) waveform -> (frames, num_mel_bins)."""
    kaldi = require(
        "torchaudio.compliance.kaldi", "torchaudio", "DassFeatureExtractor(backend='torchaudio')",
        "or choose backend='torch': the same features, no extra dependency",
    )  # fmt: skip
    return kaldi.fbank(
        waveform.unsqueeze(0),
        htk_compat=True,
        sample_frequency=float(sampling_rate),
        use_energy=False,
        window_type="hanning",
        num_mel_bins=num_mel_bins,
        dither=0.0,
        frame_shift=float(FRAME_SHIFT_MS),
    )
