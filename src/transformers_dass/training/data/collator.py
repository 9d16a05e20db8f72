"""Batches for training and evaluation: raw dataset rows -> features, targets and teacher inputs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ...audio.decoding import AudioDecodeError, SkipCounter, decode_audio
from ...audio.fbank import frame_geometry, num_frames
from ...model.feature_extraction_dass import DassFeatureExtractor
from ...model.steps import num_steps, step_times, steps_holding_audio
from .augment import mix_rows, mixup, spec_augment
from .labels import LabelEncoder
from .strong_labels import FRAME_LABELS_KEY, FRAME_MASK_KEY, STRONG_KEY, StrongLabelTable, event_targets
from .teacher_logits import TeacherLogitsTable


@dataclass
class _Clip:
    waveform: np.ndarray
    target: np.ndarray | None
    teacher_logits: np.ndarray | None
    events: dict | None = None  # strongly labelled clips only


@dataclass
class DassAudioCollator:
    """Turns a list of dataset rows into a batch for `DassForAudioClassification` and its teacher.

    Each row is decoded (`decode_audio`: soundfile + resampling to the extractor's rate), its labels encoded as a
    multi-hot target, then the batch is augmented (waveform mixup, then SpecAugment on the features) and turned
    into features with `feature_extractor`. Rows that cannot be used (undecodable, empty or shorter than one frame,
    only unknown labels, missing teacher logits) are skipped and counted in `skips`; the batch is then smaller.

    Output keys:
        input_values: (batch, max_length, mel bins) float32.
        labels: (batch, num_labels) float32 multi-hot (mixed by mixup), when `label_encoder` is set.
        teacher_logits: (batch, num_labels) float32, from `teacher_logits_column` or `teacher_logits_table`
            (mixed with the same weights as the labels: an approximation of the teacher's view of the mixture).
        teacher_input_values: the teacher's own features of the (mixed, unmasked) audio, when
            `teacher_feature_extractor` is set.
        frame_labels, strong, frame_mask (with strong labels: `strong_labels` or `events_column`):
            (batch, steps, num_labels) float32 per-step targets of the strongly labelled clips on the frame model's
            grid of `step_frames` input frames (`strong_labels.event_targets`: positive where a label's events cover
            at least half of a step; zeros for weak clips), (batch,) bool whether each clip is strongly labelled
            (a mixture is strong only when both its clips are), (batch, steps) bool whether a step holds audio of
            the clip (at least one frame; the padding to `max_length` does not). `labels` of a strong clip are the
            labels of its events.

    Args:
        feature_extractor: the student's `DassFeatureExtractor`.
        label_encoder: vocabulary for the targets; None for unlabelled data.
        max_length: frames per clip (padded or cut); None: the extractor's `max_length`.
        audio_column, label_column: the dataset's columns.
        id_column: clip id, named in warnings and the key into `teacher_logits_table`.
        mixup_rate, mixup_alpha: probability of mixing a clip, Beta parameter of the weight (recipe: 0.5, 10).
        freq_mask, time_mask: SpecAugment mask parameters in bins and frames (recipe: 48, 192; 0 disables).
        teacher_logits_column, teacher_logits_table: precomputed teacher logits per clip: (num_labels,) for clip
            distillation, or (steps, num_labels) per step (on the clips padded to `max_length`, all of one shape).
        strong_labels: events of the clips, looked up by the row's `strong_labels.key_column`; rows it does not
            annotate are weak.
        events_column: or a column of the rows holding their events (`strong_labels.join_strong_labels`); None
            values are weak rows.
        step_frames: input frames per step of the targets, the student's `config.fine_step_frames`; needed with
            strong labels.
    """

    feature_extractor: Any
    label_encoder: LabelEncoder | None = None
    max_length: int | None = 1024
    audio_column: str = "audio"
    label_column: str = "labels"
    id_column: str | None = "video_id"
    teacher_logits_column: str | None = None
    teacher_logits_table: TeacherLogitsTable | None = None
    teacher_feature_extractor: Any = None
    mixup_rate: float = 0.0
    mixup_alpha: float = 10.0
    freq_mask: int = 0
    time_mask: int = 0
    strong_labels: StrongLabelTable | None = None
    events_column: str | None = None
    step_frames: int | None = None
    skips: SkipCounter = field(default_factory=SkipCounter)

    def __post_init__(self):
        if self.strong:
            if self.step_frames is None:
                raise ValueError(
                    "strong labels become targets on the frame model's steps: pass step_frames="
                    "model.config.fine_step_frames (4 input frames = 40 ms by default)"
                )
            if self.label_encoder is None:
                raise ValueError("strong labels need a label_encoder (the vocabulary of the frame targets)")

    @property
    def strong(self) -> bool:
        """Whether batches carry strong labels (`frame_labels`, `strong`, `frame_mask`)."""
        return self.strong_labels is not None or self.events_column is not None

    def for_evaluation(self) -> "DassAudioCollator":
        """The same collator without augmentation and without teacher inputs."""
        return dataclasses.replace(
            self,
            mixup_rate=0.0,
            freq_mask=0,
            time_mask=0,
            teacher_logits_column=None,
            teacher_logits_table=None,
            teacher_feature_extractor=None,
        )

    @property
    def sampling_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        clips = [clip for clip in map(self._clip, rows) if clip is not None]
        if not clips:
            raise RuntimeError(
                f"all {len(rows)} rows of this batch were skipped ({dict(self.skips.counts)} so far); see the "
                "warnings above for why"
            )
        waveforms = [clip.waveform for clip in clips]
        targets = self._stack([clip.target for clip in clips])
        teacher_logits = self._stack([clip.teacher_logits for clip in clips], "teacher logits")
        weights, partners = np.ones(len(clips), dtype=np.float32), np.arange(len(clips))

        if self.mixup_rate > 0:
            rng = np.random.default_rng(int(torch.randint(2**62, ()).item()))  # follows torch's worker seeding
            mixed_targets = targets if targets is not None else np.zeros((len(clips), 0), np.float32)
            waveforms, mixed_targets, weights, partners = mixup(
                waveforms, mixed_targets, self.mixup_rate, self.mixup_alpha, rng
            )
            targets = mixed_targets if targets is not None else None
            if teacher_logits is not None:
                teacher_logits = mix_rows(teacher_logits, weights, partners)

        batch = {"input_values": self._features(waveforms)}
        if targets is not None:
            batch["labels"] = torch.from_numpy(targets)
        if teacher_logits is not None:
            batch["teacher_logits"] = torch.from_numpy(teacher_logits)
        if self.strong:
            batch.update(self._frame_targets(clips, batch["input_values"].shape[1], weights, partners))
        if self.teacher_feature_extractor is not None:
            # A DASS teacher's extractor keeps long clips whole unless asked; AST's always pads or cuts.
            cut = {"truncation": True} if isinstance(self.teacher_feature_extractor, DassFeatureExtractor) else {}
            teacher_features = self.teacher_feature_extractor(
                waveforms, sampling_rate=self.sampling_rate, return_tensors="pt", **cut
            )
            batch["teacher_input_values"] = teacher_features["input_values"]
        return batch

    def _frame_targets(
        self, clips: list[_Clip], frames: int, weights: np.ndarray, partners: np.ndarray
    ) -> dict[str, torch.Tensor]:
        """`frame_labels`, `strong` and `frame_mask` of the clips batched in `frames` input frames, mixed as mixup
        mixed their audio (a clip keeps its length in a mixture, so its steps of audio stay its own)."""
        steps = num_steps(frames, self.step_frames)
        shift = frame_geometry(self.sampling_rate)[1] / self.sampling_rate
        audio_frames = [min(num_frames(clip.waveform.shape[0], self.sampling_rate), frames) for clip in clips]
        labels = np.zeros((len(clips), steps, self.label_encoder.num_labels), dtype=np.float32)
        for row, (clip, length) in enumerate(zip(clips, audio_frames)):
            if clip.events is not None:
                times = step_times(length, self.step_frames, shift).numpy()
                labels[row, : len(times)] = event_targets(clip.events, self.label_encoder, times)
        strong = np.array([clip.events is not None for clip in clips])
        return {
            FRAME_LABELS_KEY: torch.from_numpy(mix_rows(labels, weights, partners)),
            STRONG_KEY: torch.from_numpy(strong & strong[partners]),
            FRAME_MASK_KEY: steps_holding_audio(torch.tensor(audio_frames), self.step_frames, steps),
        }

    def _features(self, waveforms: list[np.ndarray]) -> torch.Tensor:
        """(batch, frames, bins) features of the waveforms, with SpecAugment when enabled."""
        # Training takes clips of one length: cut longer ones (the extractor keeps them whole by default).
        max_length = self.feature_extractor.max_length if self.max_length is None else self.max_length
        kwargs = {} if max_length is None else {"max_length": max_length, "truncation": True}
        features = self.feature_extractor(waveforms, sampling_rate=self.sampling_rate, return_tensors="pt", **kwargs)
        features = features["input_values"]
        if self.freq_mask > 0 or self.time_mask > 0:
            features = spec_augment(features, self.freq_mask, self.time_mask, self._mask_value())
        return features

    def _mask_value(self) -> float:
        """Normalised image of a raw log-mel 0: the recipe masks before normalising."""
        extractor = self.feature_extractor
        if getattr(extractor, "do_normalize", False):
            return (0.0 - extractor.mean) / (2 * extractor.std)
        return 0.0

    def _clip(self, row: dict) -> _Clip | None:
        """One row decoded and encoded, or None (counted in `skips`) when it cannot be used."""
        name = str(row.get(self.id_column, "?")) if self.id_column else "?"
        events = self._events(row)
        target = None
        if self.label_encoder is not None:
            if events is None and self.label_column not in row:
                raise KeyError(f"rows have no label column {self.label_column!r}; they have {sorted(row)}")
            labels = row[self.label_column] if events is None else events["label"]
            target = self.label_encoder.encode(labels)
            if target is None:
                self.skips.skip("no known label", f"{name} has only labels outside the vocabulary: {labels}")
                return None
        teacher_logits = self._teacher_logits(row, name)
        if teacher_logits is False:
            return None
        try:
            waveform = decode_audio(row[self.audio_column], self.sampling_rate)
        except AudioDecodeError as err:
            self.skips.skip("unusable audio", f"{name}: {err}")
            return None
        return _Clip(waveform, target, teacher_logits, events)

    def _events(self, row: dict) -> dict | None:
        """The row's events (strong labels), or None for a weakly labelled row."""
        if self.events_column is not None and row.get(self.events_column) is not None:
            return row[self.events_column]
        if self.strong_labels is not None:
            return self.strong_labels.get(row.get(self.strong_labels.key_column))
        return None

    def _teacher_logits(self, row: dict, name: str):
        """The row's teacher logits (num_labels,) float32, None when not used, False (counted) when missing."""
        if self.teacher_logits_table is not None:
            logits = self.teacher_logits_table.get(row.get(self.teacher_logits_table.key_column))
        elif self.teacher_logits_column is not None:
            logits = row.get(self.teacher_logits_column)
        else:
            return None
        if logits is None:
            self.skips.skip("no teacher logits", name)
            return False
        return np.asarray(logits, dtype=np.float32)

    @staticmethod
    def _stack(rows: list, what: str = "targets") -> np.ndarray | None:
        if rows[0] is None:
            return None
        shapes = {row.shape for row in rows}
        if len(shapes) > 1:
            raise ValueError(
                f"the {what} of one batch have shapes {sorted(shapes)}; per-step teacher logits must be computed on "
                "clips of one length (padded or cut to the collator's max_length)"
            )
        return np.stack(rows).astype(np.float32, copy=False)


__all__ = ["DassAudioCollator"]
