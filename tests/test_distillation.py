"""DassDistillationTrainer and its losses, metrics and checkpoint averaging, on CPU with tiny models and a tiny
streamed AudioSet-schema dataset."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import ASTConfig, ASTForAudioClassification, TrainerCallback

from tests.test_data import (
    MAX_LENGTH,
    labels_csv,
    tiny_extractor,
    write_audioset_shards,
)
from transformers_dass import DassConfig, DassForAudioClassification
from transformers_dass.training.data import (
    DassAudioCollator,
    LabelEncoder,
    load_audio_dataset,
)
from transformers_dass.training.distillation import (
    DassDistillationTrainer,
    DistillationTrainingArguments,
    TeacherEnsemble,
    average_checkpoints,
    distillation_loss,
    label_loss,
    select_checkpoints,
)
from transformers_dass.training.metrics import (
    area_under_roc,
    average_precision,
    tagging_metrics,
)


@pytest.fixture(scope="module")
def encoder() -> LabelEncoder:
    return LabelEncoder.from_csv(labels_csv())


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audioset")
    write_audioset_shards(folder)
    return folder


def stream(folder, shuffle: bool = False):
    dataset = load_audio_dataset(data_files=str(folder / "train-*.parquet"), streaming=True)
    return dataset.shuffle(seed=0, buffer_size=16, max_buffer_input_shards=1) if shuffle else dataset


def tiny_student(encoder: LabelEncoder, seed: int = 0) -> DassForAudioClassification:
    torch.manual_seed(seed)
    config = DassConfig(
        dims=[8, 16, 24, 32],
        depths=[1, 1, 1, 1],
        num_labels=encoder.num_labels,
        drop_path_rate=0.0,
        id2label=dict(enumerate(encoder.names)),
        label_mids=encoder.mids,
    )
    return DassForAudioClassification(config)


def tiny_ast(encoder: LabelEncoder, seed: int = 1) -> ASTForAudioClassification:
    torch.manual_seed(seed)
    config = ASTConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_length=MAX_LENGTH,
        num_mel_bins=128,
        num_labels=encoder.num_labels,
        id2label=dict(enumerate(encoder.names)),
    )
    return ASTForAudioClassification(config)


def training_args(tmp_path, **overrides) -> DistillationTrainingArguments:
    settings = {
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 4,
        "learning_rate": 3e-3,
        "max_steps": 4,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
        **overrides,
    }
    return DistillationTrainingArguments(**settings)


# ------------------------------------------------------------------------------------------------------------
# losses against hand computations
# ------------------------------------------------------------------------------------------------------------


def _hand_loss(kind: str, s: np.ndarray, t: np.ndarray, temperature: float, activation: str) -> float:
    def softmax(x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    if kind == "kldiv":
        p_t, p_s = softmax(t / temperature), softmax(s)
        return float((p_t * (np.log(p_t) - np.log(p_s))).sum() / len(s))
    if kind == "bce":
        q = sigmoid(t / temperature) if activation == "sigmoid" else softmax(t / temperature)
        return float(-(q * np.log(sigmoid(s)) + (1 - q) * np.log(1 - sigmoid(s))).mean())
    l2 = float(((s - t) ** 2).mean())
    cos = (s * t).sum(1) / (np.linalg.norm(s, axis=1) * np.linalg.norm(t, axis=1))
    cosine = float(1 - sigmoid(cos).mean())
    return {"l2": l2, "cosine": cosine, "l2c": l2 + cosine, "none": 0.0}[kind]


@pytest.mark.parametrize(
    "kind, temperature, activation",
    [
        ("kldiv", 1.0, "sigmoid"),
        ("kldiv", 2.5, "sigmoid"),
        ("bce", 1.0, "sigmoid"),
        ("bce", 2.0, "sigmoid"),
        ("bce", 1.5, "softmax"),
        ("l2", 1.0, "sigmoid"),
        ("cosine", 1.0, "sigmoid"),
        ("l2c", 1.0, "sigmoid"),
        ("none", 1.0, "sigmoid"),
    ],
)
def test_distillation_losses_match_hand_computation(kind, temperature, activation):
    rng = np.random.default_rng(0)
    s, t = rng.standard_normal((5, 7)), 2 * rng.standard_normal((5, 7))
    got = distillation_loss(torch.tensor(s), torch.tensor(t), kind, temperature, activation)
    assert got.dtype == torch.float32 and got.shape == ()
    assert got.item() == pytest.approx(_hand_loss(kind, s, t, temperature, activation), rel=1e-5, abs=1e-6)


def test_label_loss_by_problem_type():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -2.0]])
    multi_hot = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    assert label_loss(logits, multi_hot).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits, multi_hot).item()
    )
    classes = torch.tensor([0, 1])
    assert label_loss(logits, classes, "single_label_classification").item() == pytest.approx(
        F.cross_entropy(logits, classes).item()
    )
    assert label_loss(logits, multi_hot, "regression").item() == pytest.approx(F.mse_loss(logits, multi_hot).item())


def test_arguments_are_validated(tmp_path):
    for bad in (
        {"distillation_loss": "kl"},
        {"teacher_activation": "tanh"},
        {"distillation_weight": 1.5},
        {"distillation_temperature": 0},
    ):
        with pytest.raises(ValueError):
            training_args(tmp_path, **bad)
    args = training_args(tmp_path)
    assert (
        args.distillation_loss,
        args.distillation_weight,
        args.distillation_temperature,
        args.teacher_activation,
    ) == ("kldiv", 0.5, 1.0, "sigmoid")
    assert args.remove_unused_columns is False


# ------------------------------------------------------------------------------------------------------------
# the trainer's loss on one batch
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batch(shards, encoder):
    rows = list(stream(shards))[:4]
    return DassAudioCollator(tiny_extractor(), encoder, MAX_LENGTH)(rows)


def _loss_of(trainer, batch):
    trainer.model.train()
    return trainer.compute_loss(trainer.model, dict(batch))


@pytest.mark.parametrize("kind, weight", [("kldiv", 0.5), ("bce", 0.3), ("l2c", 0.9)])
def test_total_loss_is_weighted_mix_and_offline_equals_online(tmp_path, encoder, batch, kind, weight):
    student, teacher = tiny_student(encoder), tiny_ast(encoder)
    args = training_args(tmp_path, distillation_loss=kind, distillation_weight=weight, distillation_temperature=2.0)
    online = DassDistillationTrainer(model=copy.deepcopy(student), args=args, teacher_model=teacher)
    offline = DassDistillationTrainer(model=copy.deepcopy(student), args=args)

    with torch.no_grad():
        teacher_logits = teacher(input_values=batch["input_values"]).logits
        student_logits = student(input_values=batch["input_values"]).logits
    online_loss = _loss_of(online, batch)
    offline_loss = _loss_of(offline, {**batch, "teacher_logits": teacher_logits})
    assert online_loss.item() == pytest.approx(offline_loss.item(), rel=1e-6)

    expected = (1 - weight) * label_loss(student_logits, batch["labels"]) + weight * distillation_loss(
        student_logits, teacher_logits, kind, 2.0
    )
    assert online_loss.item() == pytest.approx(expected.item(), rel=1e-5)
    for trainer in (online, offline):
        assert set(trainer._part_counts) == {"label_loss", "distillation_loss", "teacher_loss"}
    assert online._part_sums["teacher_loss"].item() == pytest.approx(label_loss(teacher_logits, batch["labels"]).item())


def test_teacher_reads_its_own_inputs_and_ensembles_average(tmp_path, encoder, batch):
    student, first, second = tiny_student(encoder), tiny_ast(encoder, seed=1), tiny_ast(encoder, seed=2)
    args = training_args(tmp_path, distillation_loss="l2", distillation_weight=1.0)
    trainer = DassDistillationTrainer(model=student, args=args, teacher_model=[first, second])
    assert isinstance(trainer.teacher_model, TeacherEnsemble)
    own_inputs = batch["input_values"].flip(1)  # anything else than the student's inputs
    with torch.no_grad():
        mean_logits = (first(input_values=own_inputs).logits + second(input_values=own_inputs).logits) / 2
        student_logits = student(input_values=batch["input_values"]).logits
    loss = _loss_of(trainer, {**batch, "teacher_input_values": own_inputs})
    assert loss.item() == pytest.approx(F.mse_loss(student_logits, mean_logits).item(), rel=1e-5)


def test_teacher_with_other_labels_is_refused(tmp_path, encoder):
    args = training_args(tmp_path)
    other = ASTForAudioClassification(
        ASTConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_length=MAX_LENGTH,
            num_labels=10,
        )
    )
    with pytest.raises(ValueError, match="teacher scores 10 labels and the student 527"):
        DassDistillationTrainer(model=tiny_student(encoder), args=args, teacher_model=other)
    shuffled = tiny_ast(encoder)
    shuffled.config.id2label = {i: name for i, name in enumerate(reversed(encoder.names))}
    with pytest.raises(ValueError, match="label names differ"):
        DassDistillationTrainer(model=tiny_student(encoder), args=args, teacher_model=shuffled)


def test_missing_teacher_is_a_clear_error(tmp_path, encoder, batch):
    trainer = DassDistillationTrainer(model=tiny_student(encoder), args=training_args(tmp_path))
    with pytest.raises(ValueError, match="needs a teacher"):
        _loss_of(trainer, batch)
    labels_only = DassDistillationTrainer(
        model=tiny_student(encoder), args=training_args(tmp_path, distillation_loss="none")
    )
    with torch.no_grad():
        expected = label_loss(labels_only.model(input_values=batch["input_values"]).logits, batch["labels"])
    assert _loss_of(labels_only, batch).item() == pytest.approx(expected.item(), rel=1e-6)


# ------------------------------------------------------------------------------------------------------------
# training runs
# ------------------------------------------------------------------------------------------------------------


def test_distillation_run_lowers_the_loss_and_never_touches_the_teacher(tmp_path, shards, encoder):
    student, teacher = tiny_student(encoder), tiny_ast(encoder)
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    collator = DassAudioCollator(tiny_extractor(), encoder, MAX_LENGTH, mixup_rate=0.5, freq_mask=48, time_mask=20)
    args = training_args(tmp_path, max_steps=16, logging_steps=4, learning_rate=5e-3)
    trainer = DassDistillationTrainer(
        model=student,
        args=args,
        train_dataset=stream(shards, shuffle=True),
        data_collator=collator,
        teacher_model=teacher,
    )
    trainer.train()

    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 4
    for entry in logs:
        assert {"label_loss", "distillation_loss", "teacher_loss"} <= set(entry)
        assert entry["loss"] == pytest.approx(0.5 * entry["label_loss"] + 0.5 * entry["distillation_loss"], rel=1e-3)
    first, last = logs[0], logs[-1]
    print(f"loss {first['loss']:.4f} -> {last['loss']:.4f} (label loss {first['label_loss']} -> {last['label_loss']})")
    assert logs[-1]["loss"] < 0.7 * logs[0]["loss"]
    assert logs[-1]["label_loss"] < logs[0]["label_loss"]

    for name, value in teacher.state_dict().items():
        assert torch.equal(value, teacher_before[name]), name
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in teacher.parameters()}
    assert trainer.teacher_model is teacher and teacher not in list(trainer.model.modules())


class _StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def test_resume_from_checkpoint_matches_an_uninterrupted_run(tmp_path, shards, encoder):
    collator = DassAudioCollator(tiny_extractor(), encoder, MAX_LENGTH)  # no augmentation: runs are deterministic

    def run(folder, resume=None, stop_at=None):
        args = training_args(
            folder,
            max_steps=2,
            per_device_train_batch_size=2,
            gradient_accumulation_steps=2,
            save_strategy="steps",
            save_steps=1,
        )
        trainer = DassDistillationTrainer(
            model=tiny_student(encoder),
            args=args,
            train_dataset=stream(shards),
            data_collator=collator,
            teacher_model=tiny_ast(encoder),
            callbacks=[_StopAt(stop_at)] if stop_at else None,
        )
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    straight = run(tmp_path / "straight")
    interrupted = run(tmp_path / "resumed", stop_at=1)
    assert interrupted.state.global_step == 1
    resumed = run(tmp_path / "resumed", resume=str(tmp_path / "resumed" / "out" / "checkpoint-1"))
    assert resumed.state.global_step == 2
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert any("distillation_loss" in entry for entry in resumed.state.log_history if entry.get("step", 0) > 1)


def test_gradient_accumulation_equals_a_larger_batch(tmp_path, shards, encoder):
    collator = DassAudioCollator(tiny_extractor(), encoder, MAX_LENGTH)
    teacher = tiny_ast(encoder)

    def one_step(batch_size, accumulation):
        args = training_args(
            tmp_path,
            max_steps=1,
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
            learning_rate=1e-2,
            optim="sgd",
        )
        trainer = DassDistillationTrainer(
            model=tiny_student(encoder),
            args=args,
            train_dataset=stream(shards),
            data_collator=collator,
            teacher_model=teacher,
        )
        trainer.train()
        return trainer.model.state_dict()

    for a, b in zip(one_step(4, 1).values(), one_step(2, 2).values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_bf16_training_step_on_cpu(tmp_path, shards, encoder):
    collator = DassAudioCollator(tiny_extractor(), encoder, MAX_LENGTH)
    args = training_args(tmp_path, max_steps=1, bf16=True)
    trainer = DassDistillationTrainer(
        model=tiny_student(encoder),
        args=args,
        train_dataset=stream(shards),
        data_collator=collator,
        teacher_model=tiny_ast(encoder),
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 1 and all(math.isfinite(x) for x in losses)
    assert next(trainer.teacher_model.parameters()).dtype == torch.float32  # the student's (fp32) dtype


# ------------------------------------------------------------------------------------------------------------
# metrics and checkpoint averaging
# ------------------------------------------------------------------------------------------------------------


def test_average_precision_and_auc_by_hand():
    scores, targets = np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0])
    assert average_precision(scores, targets) == pytest.approx((1 + 2 / 3) / 2)  # hits at ranks 1 and 3
    assert area_under_roc(scores, targets) == pytest.approx(3 / 4)  # 3 of the 4 (pos, neg) pairs ordered
    tied, tied_targets = np.array([0.5, 0.5, 0.2]), np.array([1, 0, 0])
    assert average_precision(tied, tied_targets) == pytest.approx(0.5)  # one threshold: precision 1/2, recall 1
    assert area_under_roc(tied, tied_targets) == pytest.approx(0.75)  # a tie counts one half
    assert math.isnan(average_precision(scores, np.zeros(4))) and math.isnan(area_under_roc(scores, np.ones(4)))

    all_scores = np.stack([scores, 1 - scores, scores], axis=1)
    all_targets = np.stack([targets, targets, np.zeros(4)], axis=1)  # the last class has no positive: left out
    metrics = tagging_metrics(all_scores, all_targets)
    ap_reversed = average_precision(1 - scores, targets)  # positives at ranks 2 and 4: (1/2 + 2/4) / 2
    assert ap_reversed == pytest.approx(0.5)
    assert metrics["mAP"] == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 2)
    assert metrics["mAUC"] == pytest.approx((3 / 4 + 1 / 4) / 2)


def test_checkpoint_selection_and_averaging(tmp_path):
    for step, epoch, value in ((10, 1.0, 1.0), (20, 2.0, 2.0), (30, 3.0, 6.0)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        save_file({"w": torch.full((2, 3), value), "n": torch.tensor([step])}, str(folder / "model.safetensors"))
        (folder / "trainer_state.json").write_text(json.dumps({"epoch": epoch, "global_step": step}))
    assert [f.name for f in select_checkpoints(tmp_path, 2, 3, "epoch")] == ["checkpoint-20", "checkpoint-30"]
    assert [f.name for f in select_checkpoints(tmp_path, 5, 20, "step")] == ["checkpoint-10", "checkpoint-20"]
    averaged = average_checkpoints(select_checkpoints(tmp_path, 1, 3, "epoch"))
    torch.testing.assert_close(averaged["w"], torch.full((2, 3), 3.0))
    assert averaged["n"].item() == 30  # integer buffers come from the last checkpoint
