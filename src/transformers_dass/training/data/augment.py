"""Training augmentation of the DASS/AST recipe: waveform mixup and SpecAugment masking."""

from __future__ import annotations

import numpy as np
import torch


def mixup(
    waveforms: list[np.ndarray],
    targets: np.ndarray,
    rate: float = 0.5,
    alpha: float = 10.0,
    rng: np.random.Generator | None = None,
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Mix each clip, with probability `rate`, with another clip of the batch.

    As in the original data loader, the partner's waveform is zero-padded or cut to the clip's length, the mixing
    weight is drawn from Beta(alpha, alpha), and the targets are mixed with the same weight:
    `x = lam * x_i + (1 - lam) * x_j`, `y = lam * y_i + (1 - lam) * y_j`. (The original draws the partner from the
    whole dataset; a streamed dataset only offers the batch, which is shuffled.)

    Args:
        waveforms: B mono float32 waveforms (samples_i,).
        targets: (B, num_labels) float32.
        rate: probability that a clip is mixed; batches of one clip are never mixed.
        alpha: Beta parameter of the mixing weight.
        rng: numpy generator; a fresh unseeded one when None.

    Returns:
        (mixed waveforms, mixed targets (B, num_labels), weights (B,) float32 with 1 for unmixed clips,
        partners (B,) int64 with the clip's own index for unmixed clips). Apply the same weights and partners to
        anything else that describes the clip (e.g. precomputed teacher logits).
    """
    rng = np.random.default_rng() if rng is None else rng
    count = len(waveforms)
    weights = np.ones(count, dtype=np.float32)
    partners = np.arange(count)
    if count < 2 or rate <= 0:
        return list(waveforms), targets, weights, partners
    mixed_waveforms = []
    for i, waveform in enumerate(waveforms):
        if rng.random() >= rate:
            mixed_waveforms.append(waveform)
            continue
        j = int(rng.integers(count - 1))
        j += j >= i  # any other clip of the batch
        partner = waveforms[j][: waveform.shape[0]]
        if partner.shape[0] < waveform.shape[0]:
            partner = np.pad(partner, (0, waveform.shape[0] - partner.shape[0]))
        lam = np.float32(rng.beta(alpha, alpha))
        mixed_waveforms.append(lam * waveform + (1 - lam) * partner)
        weights[i], partners[i] = lam, j
    return mixed_waveforms, mix_rows(targets, weights, partners), weights, partners


def mix_rows(rows: np.ndarray, weights: np.ndarray, partners: np.ndarray) -> np.ndarray:
    """`weights[i] * rows[i] + (1 - weights[i]) * rows[partners[i]]` for (B, ...) rows; weights, partners (B,)."""
    w = weights.reshape((-1,) + (1,) * (rows.ndim - 1)).astype(rows.dtype)
    return w * rows + (1 - w) * rows[partners]


def spec_augment(
    features: torch.Tensor,
    freq_mask: int = 48,
    time_mask: int = 192,
    mask_value: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One frequency band and one time span masked per clip, as torchaudio's FrequencyMasking/TimeMasking.

    For a mask parameter P along an axis of size S, the width is `floor(u * P)` and the start
    `floor(v * (S - u * P))` with u, v uniform in [0, 1), independently for each clip.

    Args:
        features: (batch, frames, mel bins).
        freq_mask, time_mask: mask parameters in bins and frames (0 disables that mask).
        mask_value: what masked cells become. The recipe masks the log-mel *before* normalising it, so to match
            it on normalised features pass the normalised image of 0, `(0 - mean) / (2 * std)`.
        generator: torch generator for the random draws.

    Returns:
        A new tensor of the same shape and dtype.
    """
    out = features.clone()
    batch, frames, bins = features.shape
    for axis, param, size in ((2, freq_mask, bins), (1, time_mask, frames)):
        if param <= 0:
            continue
        draws = torch.rand(2, batch, generator=generator, dtype=torch.float64)
        width = draws[0] * param
        start = draws[1] * (size - width).clamp_min(0)
        first, last = start.long(), (start + width).long()
        position = torch.arange(size)
        mask = (position >= first[:, None]) & (position < last[:, None])  # (batch, size)
        mask = mask[:, None, :] if axis == 2 else mask[:, :, None]
        out.masked_fill_(mask.to(out.device), mask_value)
    return out


__all__ = ["mix_rows", "mixup", "spec_augment"]
