"""Knowledge distillation with `Trainer`: a student (usually DASS) learns from labels and from a teacher's logits.

The loss follows the DASS authors' training loop:

    total = (1 - w) * label_loss(student, labels) + w * distillation_loss(student, teacher)

The teacher is a frozen model run beside the student (AST, DASS, or an ensemble whose logits are averaged), or
logits computed beforehand and carried in the batch as `teacher_logits`. The module also holds what a training
run reports and keeps: mAP / mAUC for `compute_metrics`, and the averaging of checkpoint weights.

Sound event detection: with a `DassForAudioFrameClassification` student, batches may mix weakly and strongly
labelled clips (`DassAudioCollator` with strong labels): a weak clip trains through the clip readout
(`config.clip_pooling`), a strong one through its per-step logits (`mixed_label_loss`). Teacher logits of shape
(batch, steps, num_labels), from a frame-model teacher or precomputed, distil per step.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from transformers import Trainer, TrainingArguments
from transformers.utils import logging

from ..model.modeling_dass import DassForAudioFrameClassification
from ..model.readout import upsample_frame_logits
from ..model.steps import num_steps
from .data.strong_labels import FRAME_LABELS_KEY, FRAME_MASK_KEY, STRONG_KEY

logger = logging.get_logger(__name__)

DISTILLATION_LOSSES = ("kldiv", "bce", "l2", "cosine", "l2c", "none")
TEACHER_ACTIVATIONS = ("sigmoid", "softmax")
# Batch keys that belong to the teacher and are never given to the student.
TEACHER_KEYS = ("teacher_logits", "teacher_input_values")
LOGGED_PARTS = ("label_loss", "distillation_loss", "teacher_loss", "clip_loss", "frame_loss")


# ----------------------------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------------------------


def label_loss(logits: torch.Tensor, targets: torch.Tensor, problem_type: str | None = None) -> torch.Tensor:
    """The supervised loss for `problem_type`, as `DassForAudioClassification` computes it.

    Args:
        logits: (batch, num_labels).
        targets: multi-label: (batch, num_labels) multi-hot or soft; single-label: (batch,) class indices or
            (batch, num_labels) probabilities; regression: (batch, num_labels).
        problem_type: `"multi_label_classification"` (BCE with logits, the default), `"single_label_classification"`
            (cross-entropy; also chosen for integer class indices when None) or `"regression"` (MSE).

    Returns:
        Scalar float32 mean over the batch (and labels for BCE / MSE).
    """
    logits = logits.float()
    targets = targets.to(logits.device)
    if problem_type is None and targets.ndim == 1 and not targets.is_floating_point():
        problem_type = "single_label_classification"  # class indices, as transformers infers it
    if problem_type == "single_label_classification":
        return F.cross_entropy(logits, targets if targets.is_floating_point() and targets.ndim == 2 else targets.long())
    if problem_type == "regression":
        return F.mse_loss(logits, targets.float().view_as(logits))
    return F.binary_cross_entropy_with_logits(logits, targets.float())


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    kind: str = "kldiv",
    temperature: float = 1.0,
    activation: str = "sigmoid",
    problem_type: str | None = "multi_label_classification",
) -> torch.Tensor:
    """How far the student's logits are from the teacher's; both (batch, num_labels), returns a float32 scalar.

    - `kldiv`: `KL(log_softmax(student) || log_softmax(teacher / T))`, batch mean, the target given as log-probs.
    - `bce`: the label loss of the student against `sigmoid(teacher / T)` (or `softmax` with
      `activation="softmax"`) as soft targets.
    - `l2`: mean squared error between the logits.
    - `cosine`: `1 - mean(sigmoid(cos(student_i, teacher_i)))` over the clips.
    - `l2c`: `l2 + cosine`.
    - `none`: 0.
    """
    if kind not in DISTILLATION_LOSSES:
        raise ValueError(f"distillation loss must be one of {DISTILLATION_LOSSES}, got {kind!r}")
    student = student_logits.float()
    teacher = teacher_logits.detach().to(student.device, torch.float32)
    if teacher.shape != student.shape:
        raise ValueError(
            f"teacher logits {tuple(teacher.shape)} and student logits {tuple(student.shape)} differ in shape; the "
            "teacher must score the same labels, in the same order, for the same clips"
        )
    if kind == "kldiv":
        return F.kl_div(
            F.log_softmax(student, dim=-1),
            F.log_softmax(teacher / temperature, dim=-1),
            reduction="batchmean",
            log_target=True,
        )
    if kind == "bce":
        if activation not in TEACHER_ACTIVATIONS:
            raise ValueError(f"teacher activation must be one of {TEACHER_ACTIVATIONS}, got {activation!r}")
        scaled = teacher / temperature
        soft_targets = torch.sigmoid(scaled) if activation == "sigmoid" else torch.softmax(scaled, dim=-1)
        return label_loss(student, soft_targets, problem_type)
    l2 = F.mse_loss(student, teacher)
    cosine = 1.0 - torch.sigmoid(F.cosine_similarity(student, teacher, dim=-1)).mean()
    if kind == "l2":
        return l2
    if kind == "cosine":
        return cosine
    if kind == "l2c":
        return l2 + cosine
    return student.new_zeros(())


@dataclass
class FrameTargets:
    """A batch's strong labels, as `DassAudioCollator` gives them.

    Attributes:
        labels: (batch, steps, num_labels) per-step targets on the student's grid.
        strong: (batch,) bool, which clips are strongly labelled.
        mask: (batch, steps) bool, the steps that hold audio.
    """

    labels: torch.Tensor
    strong: torch.Tensor
    mask: torch.Tensor

    @classmethod
    def pop(cls, batch: dict) -> "FrameTargets | None":
        """The strong-label keys taken out of `batch` (so that the student is not given them), or None."""
        found = [batch.pop(key, None) for key in (FRAME_LABELS_KEY, STRONG_KEY, FRAME_MASK_KEY)]
        if all(value is None for value in found):
            return None
        if any(value is None for value in found):
            raise ValueError(f"a batch with strong labels needs all of {FRAME_LABELS_KEY}, {STRONG_KEY}, {FRAME_MASK_KEY}")
        return cls(*found)


def mixed_label_loss(
    clip_logits: torch.Tensor,
    labels: torch.Tensor,
    problem_type: str | None = None,
    step_logits: torch.Tensor | None = None,
    frames: FrameTargets | None = None,
) -> dict[str, torch.Tensor]:
    """The supervised loss of a batch of weakly and strongly labelled clips, with its parts.

    Each clip counts once: `label_loss = (n_weak * clip_loss + n_strong * frame_loss) / batch`, where `clip_loss` is
    `label_loss` of the weak clips' clip logits against their clip labels and `frame_loss` that of the strong clips'
    steps that hold audio (each step one example) against their per-step targets. Without `frames` it is the plain
    clip `label_loss`.

    Args:
        clip_logits: (batch, num_labels), the student's clip readout.
        labels: clip targets as for `label_loss`.
        step_logits: (batch, steps, num_labels), the student's per-step logits; needed with `frames`.
        frames: the batch's strong labels.

    Returns:
        {"label_loss"} and, with `frames`, {"clip_loss", "frame_loss"} for the parts the batch has.
    """
    if frames is None:
        return {"label_loss": label_loss(clip_logits, labels, problem_type)}
    strong = frames.strong.to(clip_logits.device, torch.bool)
    weak = ~strong
    parts, total = {}, clip_logits.new_zeros((), dtype=torch.float32)
    if weak.any():
        parts["clip_loss"] = label_loss(clip_logits[weak], labels[weak], problem_type)
        total = total + weak.sum() * parts["clip_loss"]
    else:  # every parameter stays in the graph (DDP needs it), the attention head of the clip readout included
        total = total + 0.0 * clip_logits.sum()
    if strong.any():
        steps = frames.mask.to(step_logits.device, torch.bool) & strong[:, None]
        parts["frame_loss"] = label_loss(step_logits[steps], frames.labels.to(step_logits.device)[steps], problem_type)
        total = total + strong.sum() * parts["frame_loss"]
    parts["label_loss"] = total / strong.numel()
    return parts


# ----------------------------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class DistillationTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus the distillation settings.

    `remove_unused_columns` defaults to False here: batches are built by a collator from the raw columns
    (audio bytes, labels), which the Trainer would otherwise drop before the collator sees them.
    """

    distillation_loss: str = field(
        default="kldiv",
        metadata={
            "help": "Distillation loss between student and teacher logits.",
            "choices": list(DISTILLATION_LOSSES),
        },
    )
    distillation_weight: float = field(
        default=0.5, metadata={"help": "w in (1 - w) * label loss + w * distillation loss, in [0, 1]."}
    )
    distillation_temperature: float = field(
        default=1.0, metadata={"help": "T dividing the teacher logits for the kldiv and bce losses."}
    )
    teacher_activation: str = field(
        default="sigmoid",
        metadata={
            "help": "Turns teacher logits into soft targets for the bce loss.",
            "choices": list(TEACHER_ACTIVATIONS),
        },
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Drop dataset columns the model does not take (keep False with DassAudioCollator)."},
    )

    def __post_init__(self):
        if self.distillation_loss not in DISTILLATION_LOSSES:
            raise ValueError(f"distillation_loss must be one of {DISTILLATION_LOSSES}, got {self.distillation_loss!r}")
        if self.teacher_activation not in TEACHER_ACTIVATIONS:
            raise ValueError(
                f"teacher_activation must be one of {TEACHER_ACTIVATIONS}, got {self.teacher_activation!r}"
            )
        if not 0.0 <= self.distillation_weight <= 1.0:
            raise ValueError(f"distillation_weight must be in [0, 1], got {self.distillation_weight}")
        if not self.distillation_temperature > 0:
            raise ValueError(f"distillation_temperature must be positive, got {self.distillation_temperature}")
        super().__post_init__()


# ----------------------------------------------------------------------------------------------------------------
# Teacher
# ----------------------------------------------------------------------------------------------------------------


class TeacherEnsemble(nn.Module):
    """Several teachers over the same labels; their logits (batch, num_labels) are averaged."""

    def __init__(self, teachers: list[nn.Module]):
        super().__init__()
        if not teachers:
            raise ValueError("an ensemble needs at least one teacher")
        self.teachers = nn.ModuleList(teachers)
        counts = {_num_labels(teacher) for teacher in teachers}
        if len(counts) > 1:
            raise ValueError(f"the ensemble's teachers score different numbers of labels: {sorted(counts)}")
        self.config = getattr(teachers[0], "config", None)

    def forward(self, **inputs) -> SimpleNamespace:
        logits = torch.stack([_logits(teacher(**inputs)).float() for teacher in self.teachers]).mean(dim=0)
        return SimpleNamespace(logits=logits)


def _logits(outputs) -> torch.Tensor:
    if isinstance(outputs, dict) or hasattr(outputs, "logits"):
        return outputs["logits"] if isinstance(outputs, dict) else outputs.logits
    return outputs[0]


def _num_labels(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    return getattr(config, "num_labels", None)


def _named_labels(config) -> list[str] | None:
    """The config's label names, or None when they are transformers' placeholders `LABEL_i`."""
    id2label = getattr(config, "id2label", None) or {}
    names = [str(id2label.get(i, id2label.get(str(i), ""))) for i in range(len(id2label))]
    if not names or all(re.fullmatch(r"LABEL_\d+", name) for name in names):
        return None
    return names


def prepare_teacher(teacher_model, student: nn.Module | None = None) -> nn.Module:
    """The teacher (or the ensemble of a list of them), frozen and in eval mode, after checking that it scores
    the student's labels (same number; same names when both configs name them)."""
    teacher = TeacherEnsemble(list(teacher_model)) if isinstance(teacher_model, (list, tuple)) else teacher_model
    student_labels, teacher_labels = _num_labels(student), _num_labels(teacher)
    if student_labels is not None and teacher_labels is not None and student_labels != teacher_labels:
        raise ValueError(
            f"the teacher scores {teacher_labels} labels and the student {student_labels}; distillation needs the "
            "same labels in the same order (e.g. both AudioSet's 527 from class_labels_indices.csv)"
        )
    student_names = _named_labels(getattr(student, "config", None))
    teacher_names = _named_labels(getattr(teacher, "config", None))
    if student_names and teacher_names and student_names != teacher_names:
        first = next(i for i, (a, b) in enumerate(zip(student_names, teacher_names)) if a != b)
        raise ValueError(
            f"teacher and student label names differ, first at index {first}: teacher {teacher_names[first]!r}, "
            f"student {student_names[first]!r}; the teacher's logits would be read as the wrong classes"
        )
    teacher.requires_grad_(False)
    return teacher.eval()


# ----------------------------------------------------------------------------------------------------------------
# Trainer
# ----------------------------------------------------------------------------------------------------------------


class DassDistillationTrainer(Trainer):
    """`Trainer` whose training loss mixes the label loss with a distillation loss against a teacher.

    Args:
        teacher_model: a model whose output has `logits` over the student's labels (transformers' AST, a DASS,
            ...), or a list of them (an ensemble: mean of logits), or None to read `teacher_logits`
            (batch, num_labels) from each batch. It is frozen, kept in eval mode, moved to the student's device
            and dtype, and kept outside `self.model`: it is never wrapped for DDP/FSDP, never saved in
            checkpoints and never given to the optimizer.
        *args, **kwargs: as for `Trainer`; `args` should be `DistillationTrainingArguments` (plain
            `TrainingArguments` get the defaults: kldiv, weight 0.5, temperature 1, sigmoid).

    A batch may hold `teacher_input_values` (the teacher's own features, e.g. from its feature extractor); the
    teacher reads `input_values` otherwise. Evaluation reports the student's own label loss. Training logs
    `label_loss`, `distillation_loss` and, with labels, `teacher_loss` (the teacher's label loss) beside `loss`.

    Frame students (`DassForAudioFrameClassification`): the label loss is `mixed_label_loss` (strong clips through
    their steps, weak ones through `config.clip_pooling`'s readout; `clip_loss` and `frame_loss` are logged too).
    Teacher logits of shape (batch, steps, num_labels) -- a frame-model teacher, or a precomputed column of DASS
    `frame_logits` at 0.32 s, upsampled here as the frame model upsamples its own -- distil per step: each step that
    holds audio is one row of `distillation_loss`. Clip-level teacher logits distil the clip readout, as for a
    clip student. Evaluation predictions of a frame student are its clip logits (what the tagging metrics read).
    """

    def __init__(self, *args, teacher_model=None, **kwargs):
        super().__init__(*args, **kwargs)
        settings = self.args
        self.distillation_kind = getattr(settings, "distillation_loss", "kldiv")
        self.distillation_weight = getattr(settings, "distillation_weight", 0.5)
        self.distillation_temperature = getattr(settings, "distillation_temperature", 1.0)
        self.teacher_activation = getattr(settings, "teacher_activation", "sigmoid")
        if self.distillation_kind == "none" and teacher_model is not None:
            logger.warning("distillation_loss='none': the teacher is only used to log teacher_loss.")
        self.teacher_model = None if teacher_model is None else prepare_teacher(teacher_model, self.model)
        # compute_loss returns per-batch means, so the Trainer divides by the accumulation steps itself.
        self.loss_is_scaled_for_ga = False
        self.model_accepts_loss_kwargs = False
        self._part_sums: dict[str, torch.Tensor] = {}
        self._part_counts: dict[str, int] = {}

    # -- loss ------------------------------------------------------------------------------------------------

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        batch_teacher_logits = inputs.pop("teacher_logits", None)
        teacher_inputs = inputs.pop("teacher_input_values", None)
        labels = inputs.pop("labels", None)
        frames = FrameTargets.pop(inputs)
        student = self.accelerator.unwrap_model(model)
        per_step = isinstance(student, DassForAudioFrameClassification)
        if frames is not None and not per_step:
            raise ValueError(
                "the batch has strong labels (frame_labels): the student must give per-step logits; load it with "
                "DassForAudioFrameClassification (or AutoModelForAudioFrameClassification), same folder, same weights"
            )
        outputs = model(**inputs, return_clip_logits=True) if per_step else model(**inputs)
        logits = outputs.clip_logits if per_step else _logits(outputs)
        step_logits = outputs.logits if per_step else None
        problem_type = getattr(student.config, "problem_type", None)

        if not model.training:
            loss = None if labels is None else mixed_label_loss(logits, labels, problem_type, step_logits, frames)["label_loss"]
            if per_step:  # the tagging metrics read clip scores; a whole evaluation set of steps would not fit
                outputs = {"logits": logits}
            return (loss, outputs) if return_outputs else loss

        parts = {}
        if labels is not None:
            parts.update(mixed_label_loss(logits, labels, problem_type, step_logits, frames))
        elif frames is not None:
            raise ValueError("a batch with strong labels needs its clip `labels` too (DassAudioCollator gives both)")
        teacher_logits = self._teacher_logits(batch_teacher_logits, teacher_inputs, inputs, logits)
        if teacher_logits is not None and labels is not None and teacher_logits.ndim == 2:
            parts["teacher_loss"] = label_loss(teacher_logits, labels, problem_type)

        if self.distillation_kind == "none":
            if labels is None:
                raise ValueError("distillation_loss='none' trains on labels only, but the batch has no `labels`")
            loss = parts["label_loss"]
        else:
            if teacher_logits.ndim == 3:
                student_rows, teacher_rows = self._step_rows(student, step_logits, teacher_logits, frames, inputs)
            else:
                student_rows, teacher_rows = logits, teacher_logits
            parts["distillation_loss"] = distillation_loss(
                student_rows,
                teacher_rows,
                self.distillation_kind,
                self.distillation_temperature,
                self.teacher_activation,
                problem_type,
            )
            if labels is None:
                loss = parts["distillation_loss"]
            else:
                w = self.distillation_weight
                loss = (1 - w) * parts["label_loss"] + w * parts["distillation_loss"]
        self._record(parts)
        return (loss, outputs) if return_outputs else loss

    @staticmethod
    def _step_rows(student, step_logits, teacher_logits, frames: FrameTargets | None, inputs) -> tuple:
        """(student, teacher) logits of the steps that hold audio (all steps without strong labels), each step a
        row (steps, num_labels), for per-step distillation. Teacher logits at the 0.32 s step of a DASS
        `frame_logits` are upsampled to the student's grid as the frame model upsamples its own."""
        if step_logits is None:
            raise ValueError(
                "per-step teacher logits (batch, steps, num_labels) need a student with per-step logits: load it with "
                "DassForAudioFrameClassification (same folder, same weights)"
            )
        teacher = teacher_logits.to(step_logits.device, torch.float32)
        steps = step_logits.shape[1]
        if teacher.shape[1] != steps:
            coarse = num_steps(inputs["input_values"].shape[1], student.config.frames_per_step)
            if teacher.shape[1] != coarse:
                raise ValueError(
                    f"the teacher's per-step logits have {teacher.shape[1]} steps, the student's {steps} (or {coarse} "
                    "before upsampling): give the teacher the student's input length and frame_upsampling"
                )
            teacher = upsample_frame_logits(teacher, student.config.frame_upsampling, steps)
        if frames is None:
            return step_logits.flatten(0, 1), teacher.flatten(0, 1)
        mask = frames.mask.to(step_logits.device, torch.bool)
        return step_logits[mask], teacher[mask]

    def _teacher_logits(self, batch_logits, teacher_inputs, inputs, student_logits) -> torch.Tensor | None:
        """Teacher logits float32, (batch, num_labels) or per step (batch, steps, num_labels): from the batch, or
        from running the teacher."""
        if batch_logits is not None:
            if self.teacher_model is not None:
                raise ValueError(
                    "the batch holds `teacher_logits` and the trainer has a `teacher_model`: use one source of "
                    "teacher logits (drop --teacher_model_name_or_path or the teacher logits column)"
                )
            return batch_logits.to(student_logits.device, torch.float32)
        if self.teacher_model is None:
            if self.distillation_kind == "none":
                return None
            raise ValueError(
                f"distillation_loss={self.distillation_kind!r} needs a teacher: pass `teacher_model=` to the trainer "
                "or put precomputed `teacher_logits` in each batch (set distillation_loss='none' to train on labels)"
            )
        self._place_teacher(student_logits.device)
        teacher_input = teacher_inputs if teacher_inputs is not None else inputs["input_values"]
        with torch.no_grad(), self.accelerator.autocast():
            return _logits(self.teacher_model(input_values=teacher_input)).float()

    def _place_teacher(self, device: torch.device) -> None:
        """Move the teacher to the student's device and floating dtype (once, or when they change)."""
        student_param = next((p for p in self.model.parameters() if p.is_floating_point()), None)
        dtype = student_param.dtype if student_param is not None else torch.float32
        teacher_param = next((p for p in self.teacher_model.parameters() if p.is_floating_point()), None)
        if teacher_param is not None and (teacher_param.device != device or teacher_param.dtype != dtype):
            self.teacher_model.to(device=device, dtype=dtype)
        self.teacher_model.eval()

    # -- logging ---------------------------------------------------------------------------------------------

    def _record(self, parts: dict[str, torch.Tensor]) -> None:
        for name, value in parts.items():
            value = value.detach().float()
            self._part_sums[name] = self._part_sums.get(name, torch.zeros((), device=value.device)) + value
            self._part_counts[name] = self._part_counts.get(name, 0) + 1

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the mean of each loss part since the last training log to a training log (averaged over ranks)."""
        if "loss" in logs and self._part_counts:
            device = next(iter(self._part_sums.values())).device
            # A fixed layout so that every rank contributes tensors of the same shape to the reduction.
            sums = torch.stack([self._part_sums.get(n, torch.zeros((), device=device)) for n in LOGGED_PARTS])
            counts = torch.tensor([float(self._part_counts.get(n, 0)) for n in LOGGED_PARTS], device=device)
            totals = torch.cat([sums, counts])
            if self.accelerator.num_processes > 1:
                totals = self.accelerator.reduce(totals, reduction="sum")
            for i, name in enumerate(LOGGED_PARTS):
                if totals[len(LOGGED_PARTS) + i] > 0:
                    logs[name] = round((totals[i] / totals[len(LOGGED_PARTS) + i]).item(), 6)
            self._part_sums, self._part_counts = {}, {}
        super().log(logs, start_time)

    # -- data ------------------------------------------------------------------------------------------------

    def get_train_dataloader(self) -> DataLoader:
        """As `Trainer`'s, except that a streamed `datasets.IterableDataset` in a multi-process run is split with
        `split_dataset_by_node` so that each rank reads its own part (by default accelerate makes rank 0 read
        every batch and send the others theirs, which makes rank 0 decode all the audio)."""
        import datasets

        dataset = self.train_dataset
        if self.args.world_size <= 1 or not isinstance(dataset, datasets.IterableDataset):
            return super().get_train_dataloader()
        from accelerate.data_loader import prepare_data_loader

        from .data import split_for_node

        part = split_for_node(dataset, rank=self.args.process_index, world_size=self.args.world_size)
        loader = DataLoader(
            part,
            batch_size=self._train_batch_size,
            collate_fn=self._get_collator_with_removed_columns(self.data_collator, description="training"),
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
            persistent_workers=self.args.dataloader_persistent_workers,
            prefetch_factor=self.args.dataloader_prefetch_factor,
        )
        # Already split: accelerate must neither split it again (num_processes=1) nor dispatch it.
        prepared = prepare_data_loader(
            loader,
            device=self.args.device,
            num_processes=1,
            process_index=0,
            put_on_device=True,
            dispatch_batches=False,
            non_blocking=self.args.dataloader_pin_memory,
        )
        # As Accelerator.prepare does: accelerate tracks its loaders (end of epoch, saved dataloader state).
        self.accelerator._dataloaders.append(prepared)
        return prepared

    def get_eval_dataloader(self, eval_dataset=None) -> DataLoader:
        with self._evaluation_collator():
            return super().get_eval_dataloader(eval_dataset)

    def get_test_dataloader(self, test_dataset) -> DataLoader:
        with self._evaluation_collator():
            return super().get_test_dataloader(test_dataset)

    @contextlib.contextmanager
    def _evaluation_collator(self):
        """Context in which `self.data_collator` is its evaluation form (no augmentation, no teacher inputs)."""
        saved = self.data_collator
        if hasattr(saved, "for_evaluation"):
            self.data_collator = saved.for_evaluation()
        try:
            yield
        finally:
            self.data_collator = saved


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint weight averaging
# ----------------------------------------------------------------------------------------------------------------


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, float | None, Path]]:
    """`(global step, epoch, folder)` of each `checkpoint-N` folder in `output_dir`, by step."""
    found = []
    for folder in Path(output_dir).glob("checkpoint-*"):
        match = re.fullmatch(r"checkpoint-(\d+)", folder.name)
        if not match or not folder.is_dir():
            continue
        epoch = None
        state = folder / "trainer_state.json"
        if state.exists():
            epoch = json.loads(state.read_text()).get("epoch")
        found.append((int(match.group(1)), epoch, folder))
    return sorted(found, key=lambda item: item[0])


def select_checkpoints(output_dir: str | os.PathLike, start: float, end: float, unit: str = "step") -> list[Path]:
    """Checkpoint folders whose step (`unit="step"`) or epoch (`unit="epoch"`, rounded) is in [start, end]."""
    if unit not in ("step", "epoch"):
        raise ValueError(f"unit must be 'step' or 'epoch', got {unit!r}")
    chosen = []
    for step, epoch, folder in list_checkpoints(output_dir):
        position = step if unit == "step" else (None if epoch is None else round(epoch))
        if position is not None and start <= position <= end:
            chosen.append(folder)
    return chosen


def average_checkpoints(folders: list[str | os.PathLike]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the model weights (`model.safetensors`) of several checkpoints, as float32
    for floating tensors (integer buffers are taken from the last checkpoint)."""
    from safetensors.torch import load_file

    if not folders:
        raise ValueError("no checkpoints to average")
    total: dict[str, torch.Tensor] = {}
    for folder in folders:
        weights = load_file(str(Path(folder) / "model.safetensors"))
        for name, tensor in weights.items():
            if tensor.is_floating_point():
                total[name] = total.get(name, 0) + tensor.double()
            else:
                total[name] = tensor
    return {name: (t / len(folders)).float() if t.is_floating_point() else t for name, t in total.items()}


__all__ = [
    "DISTILLATION_LOSSES",
    "DassDistillationTrainer",
    "DistillationTrainingArguments",
    "TeacherEnsemble",
    "FrameTargets",
    "average_checkpoints",
    "distillation_loss",
    "label_loss",
    "mixed_label_loss",
    "list_checkpoints",
    "prepare_teacher",
    "select_checkpoints",
]
