"""Strong labels end to end: AudioSet-strong tables read with `datasets` and joined to audio rows by segment id,
events laid on the frame model's grid (the half-step rule), the collator's mixed weak/strong batches, the trainer's
mixed loss and per-step distillation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.test_data import MAX_LENGTH, audioset_row, flac_bytes, labels_csv, tiny_extractor, write_parquet
from tests.test_distillation import training_args
from transformers_dass import DassConfig, DassForAudioClassification, DassForAudioFrameClassification
from transformers_dass.model.readout import upsample_frame_logits
from transformers_dass.model.steps import step_times
from transformers_dass.training.data import (
    DassAudioCollator,
    LabelEncoder,
    StrongLabelTable,
    event_targets,
    join_strong_labels,
    load_audio_dataset,
    segment_key,
)
from transformers_dass.training.distillation import (
    DassDistillationTrainer,
    FrameTargets,
    distillation_loss,
    label_loss,
    mixed_label_loss,
)
from transformers_dass.training.metrics import compute_tagging_metrics

SPEECH, MUSIC, DOG = "/m/09x0r", "/m/04rlf", "/m/0bt9lr"
STEP_FRAMES = 4  # the default frame model's step: 40 ms


@pytest.fixture(scope="module")
def encoder() -> LabelEncoder:
    return LabelEncoder.from_csv(labels_csv())


def write_tsv(path, rows: list[tuple], header=("segment_id", "start_time_seconds", "end_time_seconds", "label")):
    path.write_text("\n".join("\t".join(map(str, row)) for row in [header, *rows]) + "\n")
    return path


# ----------------------------------------------------------------------------------------------------------------
# Reading and joining
# ----------------------------------------------------------------------------------------------------------------


def test_segment_ids_are_youtube_id_then_start_ms():
    assert segment_key("--4gqARaEJE_0") == "--4gqARaEJE"
    assert segment_key("-0SdAVK79lg_30000") == "-0SdAVK79lg"
    assert segment_key("a_b-c_10000") == "a_b-c"  # YouTube ids may hold "_": only the last one splits
    assert segment_key("--4gqARaEJE_0", match="segment_id") == "--4gqARaEJE_0"
    with pytest.raises(ValueError, match="match='segment_id'"):
        segment_key("--4gqARaEJE")
    with pytest.raises(ValueError, match="match must be one of"):
        segment_key("x_0", match="ytid")


def test_the_table_gives_each_clip_its_events(tmp_path):
    path = write_tsv(
        tmp_path / "strong.tsv",
        [
            ("-0SdAVK79lg_30000", 1.5, 2.25, SPEECH),
            ("--4gqARaEJE_0", 0.0, 10.0, MUSIC),
            ("-0SdAVK79lg_30000", 0.0, 0.8, DOG),
            ("--4gqARaEJE_0", 3.0, 4.0, SPEECH),
        ],
    )
    table = StrongLabelTable(str(path))
    assert len(table) == 2 and "--4gqARaEJE" in table and "--4gqARaEJE_0" not in table
    assert table.get("--4gqARaEJE") == {"onset": [0.0, 3.0], "offset": [10.0, 4.0], "label": [MUSIC, SPEECH]}
    events = table.get("-0SdAVK79lg")
    assert sorted(zip(events["onset"], events["offset"], events["label"])) == [(0.0, 0.8, DOG), (1.5, 2.25, SPEECH)]
    assert table.get("nope") is None
    whole = StrongLabelTable(str(path), match="segment_id")
    assert "--4gqARaEJE_0" in whole and whole.get("--4gqARaEJE") is None


def test_the_framed_table_drops_not_present_rows(tmp_path):
    header = ("segment_id", "start_time_seconds", "end_time_seconds", "label", "present")
    rows = [("abc_0", 0.0, 1.0, SPEECH, "PRESENT"), ("abc_0", 2.0, 3.0, DOG, "NOT_PRESENT")]
    table = StrongLabelTable(str(write_tsv(tmp_path / "framed.tsv", rows, header)))
    assert table.get("abc") == {"onset": [0.0], "offset": [1.0], "label": [SPEECH]}


def test_tables_that_do_not_fit_the_rule_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="start_time_seconds"):
        StrongLabelTable(str(write_tsv(tmp_path / "a.tsv", [("x_0", 0, 1)], ("segment_id", "onset", "offset"))))
    two_segments = write_tsv(tmp_path / "b.tsv", [("abc_0", 0, 1, SPEECH), ("abc_10000", 0, 1, DOG)])
    with pytest.raises(ValueError, match="match='segment_id'"):
        StrongLabelTable(str(two_segments))


@pytest.mark.parametrize("streaming", [False, True])
def test_join_puts_events_beside_the_audio_by_video_id(tmp_path, streaming):
    rows = [audioset_row(i, [i % 4], rate=16000, seconds=0.5) for i in range(3)]
    rows[0]["video_id"], rows[1]["video_id"] = "--4gqARaEJE", "-0SdAVK79lg"
    write_parquet(rows, tmp_path / "train-00000-of-00001.parquet")
    tsv = write_tsv(
        tmp_path / "strong.tsv",
        [("--4gqARaEJE_0", 0.1, 0.3, SPEECH), ("-0SdAVK79lg_30000", 0.0, 0.2, DOG), ("unheard_0", 0, 1, MUSIC)],
    )
    audio = load_audio_dataset(data_files=str(tmp_path / "train-*.parquet"), streaming=streaming)
    joined = list(join_strong_labels(audio, StrongLabelTable(str(tsv))))
    assert [row["video_id"] for row in joined] == ["--4gqARaEJE", "-0SdAVK79lg", "clip0002"]
    assert joined[0]["events"] == {"onset": [0.1], "offset": [0.3], "label": [SPEECH]}
    assert joined[1]["events"] == {"onset": [0.0], "offset": [0.2], "label": [DOG]}
    assert joined[2]["events"] is None  # a weakly labelled clip
    assert joined[2]["labels"] == rows[2]["labels"] and joined[0]["audio"]["bytes"] == rows[0]["audio"]["bytes"]
    with pytest.raises(ValueError, match="key_column"):
        join_strong_labels(audio, StrongLabelTable(str(tsv), key_column="ytid"))


# ----------------------------------------------------------------------------------------------------------------
# Events -> per-step targets
# ----------------------------------------------------------------------------------------------------------------


def test_a_step_is_positive_when_the_label_covers_half_of_it(encoder):
    # 25 frames, 4 per step: steps [0.04 k, 0.04 k + 0.04) s; the last one, [0.24, 0.25), is one frame
    times = step_times(25, STEP_FRAMES).numpy()
    events = {
        "onset": [0.00, 0.100, 0.121, 0.125, 0.160, 0.180, 0.244, 0.05],
        "offset": [0.06, 0.118, 0.135, 0.140, 0.170, 0.191, 0.300, 0.09],
        "label": [SPEECH, SPEECH, DOG, DOG, MUSIC, MUSIC, MUSIC, "/m/not_a_class"],
    }
    targets = event_targets(events, encoder, times)
    by_label = {mid: targets[:, encoder.mids.index(mid)].nonzero()[0].tolist() for mid in (SPEECH, DOG, MUSIC)}
    # Speech: step 0 whole, step 1 half exactly (0.04-0.06); 18 ms of step 2 is less than half
    assert by_label[SPEECH] == [0, 1]
    # Dog: two events overlapping inside step 3 cover 19 ms together (29 ms if counted twice): not half
    assert by_label[DOG] == []
    # Music: 10 ms + 11 ms of step 4 (together half); 6 ms of the 10 ms last step (cut by the audio)
    assert by_label[MUSIC] == [4, 6]
    assert targets.sum() == 4 and targets.dtype == np.float32
    assert encoder.unknown_counts["/m/not_a_class"] >= 1


# ----------------------------------------------------------------------------------------------------------------
# The collator
# ----------------------------------------------------------------------------------------------------------------


def row(index: int, seconds: float, labels: list[str], events: dict | None) -> dict:
    """A 16 kHz row with weak `labels` and, for a strong clip, its `events`."""
    return {
        "video_id": f"clip{index:04d}",
        "audio": {"bytes": flac_bytes(seconds, 16000, 300.0 + 200 * index, seed=index), "path": None},
        "labels": labels,
        "events": events,
    }


def strong_collator(encoder, **kwargs) -> DassAudioCollator:
    return DassAudioCollator(
        tiny_extractor(), encoder, MAX_LENGTH, events_column="events", step_frames=STEP_FRAMES, **kwargs
    )


STRONG_EVENTS = {"onset": [0.2, 0.9], "offset": [0.5, 1.5], "label": [SPEECH, DOG]}


def test_collator_lays_events_on_the_steps_and_marks_strong_clips(encoder):
    rows = [
        row(0, 1.0, [MUSIC], STRONG_EVENTS),  # 1 s: 98 frames, steps 0..24 hold audio
        row(1, 0.5, [MUSIC], None),  # 0.5 s: 48 frames, steps 0..11
    ]
    batch = strong_collator(encoder)(rows)
    assert batch["input_values"].shape == (2, MAX_LENGTH, 128)
    assert batch["frame_labels"].shape == (2, 25, 527) and batch["frame_labels"].dtype == torch.float32
    assert batch["strong"].tolist() == [True, False]
    assert batch["frame_mask"].sum(dim=1).tolist() == [25, 12]
    speech, dog, music = (encoder.mids.index(mid) for mid in (SPEECH, DOG, MUSIC))
    strong = batch["frame_labels"][0]
    # Speech 0.2-0.5 s: steps 5..11 whole, step 12 (0.48-0.52) half; Dog from 0.9 s: step 22 (0.88-0.92) half,
    # then steps 23 and 24 (the last one cut at 0.98 s by the audio)
    assert strong[:, speech].nonzero().squeeze(1).tolist() == list(range(5, 13))
    assert strong[:, dog].nonzero().squeeze(1).tolist() == [22, 23, 24]
    assert strong.sum() == 11 and batch["frame_labels"][1].sum() == 0
    # clip labels: a strong clip's are its events' labels, a weak clip's its own
    assert batch["labels"][0].nonzero().squeeze(1).tolist() == sorted([speech, dog])
    assert batch["labels"][1].nonzero().squeeze(1).tolist() == [music]
    # evaluation keeps the strong labels (the evaluation loss is the same mix)
    assert "frame_labels" in strong_collator(encoder).for_evaluation()(rows)


def test_collator_finds_events_in_a_table_by_clip_id(tmp_path, encoder):
    tsv = write_tsv(tmp_path / "strong.tsv", [("clip0000_0", 0.2, 0.5, SPEECH), ("clip0000_0", 0.9, 1.5, DOG)])
    table = StrongLabelTable(str(tsv))
    rows = [row(0, 1.0, [MUSIC], None), row(1, 0.5, [MUSIC], None)]
    collator = DassAudioCollator(tiny_extractor(), encoder, MAX_LENGTH, strong_labels=table, step_frames=STEP_FRAMES)
    from_table = collator(rows)
    rows[0]["events"] = STRONG_EVENTS
    from_column = strong_collator(encoder)(rows)
    assert from_table["strong"].tolist() == [True, False]
    for key in ("frame_labels", "frame_mask", "labels"):
        assert torch.equal(from_table[key], from_column[key]), key


def test_mixup_mixes_frame_targets_like_labels_and_a_mixture_is_strong_only_if_both_are(encoder):
    speech_only = {"onset": [0.2], "offset": [0.5], "label": [SPEECH]}
    dog_only = {"onset": [0.6], "offset": [0.9], "label": [DOG]}
    rows = [row(0, 1.0, [], speech_only), row(1, 1.0, [], dog_only)]
    alone = strong_collator(encoder)(rows)
    torch.manual_seed(0)
    mixed = strong_collator(encoder, mixup_rate=1.0)(rows)  # two clips: each is mixed with the other
    speech, dog = encoder.mids.index(SPEECH), encoder.mids.index(DOG)
    assert mixed["strong"].tolist() == [True, True]
    for i, j in ((0, 1), (1, 0)):
        weight = mixed["labels"][i, speech if i == 0 else dog]  # disjoint labels: the clip's label is its weight
        assert 0 < weight < 1
        expected = weight * alone["frame_labels"][i] + (1 - weight) * alone["frame_labels"][j]
        torch.testing.assert_close(mixed["frame_labels"][i], expected)
    weak_partner = [row(0, 1.0, [], speech_only), row(1, 1.0, [MUSIC], None)]
    assert strong_collator(encoder, mixup_rate=1.0)(weak_partner)["strong"].tolist() == [False, False]


def test_strong_labels_need_the_step_of_the_frame_model(encoder):
    with pytest.raises(ValueError, match="fine_step_frames"):
        DassAudioCollator(tiny_extractor(), encoder, MAX_LENGTH, events_column="events")


# ----------------------------------------------------------------------------------------------------------------
# The trainer
# ----------------------------------------------------------------------------------------------------------------


def bce(logits: np.ndarray, targets: np.ndarray) -> float:
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    return float(-(targets * np.log(p) + (1 - targets) * np.log(1 - p)).mean())


def test_mixed_loss_counts_each_clip_once():
    generator = torch.Generator().manual_seed(0)
    clip_logits, step_logits = torch.randn(4, 3, generator=generator), torch.randn(4, 5, 3, generator=generator)
    labels = (torch.rand(4, 3, generator=generator) > 0.5).float()
    frame_labels = (torch.rand(4, 5, 3, generator=generator) > 0.5).float()
    strong = torch.tensor([True, False, True, False])
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[2, 3:] = False
    parts = mixed_label_loss(clip_logits, labels, None, step_logits, FrameTargets(frame_labels, strong, mask))
    weak_loss = bce(clip_logits[[1, 3]].numpy(), labels[[1, 3]].numpy())
    kept_logits = torch.cat([step_logits[0], step_logits[2, :3]]).numpy()
    frame_loss = bce(kept_logits, torch.cat([frame_labels[0], frame_labels[2, :3]]).numpy())
    assert parts["clip_loss"].item() == pytest.approx(weak_loss, rel=1e-6)
    assert parts["frame_loss"].item() == pytest.approx(frame_loss, rel=1e-6)
    assert parts["label_loss"].item() == pytest.approx((2 * weak_loss + 2 * frame_loss) / 4, rel=1e-6)
    # all weak: the clip loss; no strong labels: the plain label loss
    none_strong = FrameTargets(frame_labels, torch.zeros(4, dtype=torch.bool), mask)
    all_weak = mixed_label_loss(clip_logits, labels, None, step_logits, none_strong)
    assert set(all_weak) == {"clip_loss", "label_loss"}
    assert all_weak["label_loss"].item() == pytest.approx(label_loss(clip_logits, labels).item(), rel=1e-6)
    assert mixed_label_loss(clip_logits, labels)["label_loss"] == label_loss(clip_logits, labels)


def test_all_strong_is_the_frame_models_own_loss(encoder):
    model = frame_student(encoder)
    inputs = torch.randn(2, 60, 128)
    frame_labels = (torch.rand(2, 15, 527) > 0.99).float()
    mask = torch.ones(2, 15, dtype=torch.bool)
    mask[1, 9:] = False
    with torch.no_grad():
        out = model(inputs, return_clip_logits=True)
    frames = FrameTargets(frame_labels, torch.tensor([True, True]), mask)
    mixed = mixed_label_loss(out.clip_logits, torch.zeros(2, 527), "multi_label_classification", out.logits, frames)
    torch.testing.assert_close(mixed["label_loss"], model.compute_frame_loss(out.logits, frame_labels, mask))


def frame_student(encoder: LabelEncoder, seed: int = 0, **config) -> DassForAudioFrameClassification:
    torch.manual_seed(seed)
    settings = dict(
        dims=[8, 16, 24, 32], depths=[1, 1, 1, 1], num_labels=encoder.num_labels, drop_path_rate=0.0,
        id2label=dict(enumerate(encoder.names)), label_mids=encoder.mids, problem_type="multi_label_classification",
    )  # fmt: skip
    return DassForAudioFrameClassification(DassConfig(**{**settings, **config}))


@pytest.fixture(scope="module")
def mixed_batch(encoder):
    rows = [
        row(0, 1.0, [MUSIC], STRONG_EVENTS),
        row(1, 0.5, [MUSIC], None),
        row(2, 0.6, [], {"onset": [0.0], "offset": [0.3], "label": [SPEECH]}),
        row(3, 1.0, [DOG, SPEECH], None),
    ]
    return strong_collator(encoder)(rows)


def test_trainer_trains_weak_clips_through_the_readout_and_strong_ones_through_the_steps(tmp_path, encoder, mixed_batch):
    model = frame_student(encoder, clip_pooling="attention")
    trainer = DassDistillationTrainer(model=model, args=training_args(tmp_path, distillation_loss="none"))
    model.train()
    loss, outputs = trainer.compute_loss(model, dict(mixed_batch), return_outputs=True)
    frames = FrameTargets(mixed_batch["frame_labels"], mixed_batch["strong"], mixed_batch["frame_mask"])
    expected = mixed_label_loss(outputs.clip_logits, mixed_batch["labels"], None, outputs.logits, frames)
    torch.testing.assert_close(loss, expected["label_loss"])
    assert set(trainer._part_counts) == {"label_loss", "clip_loss", "frame_loss"}
    loss.backward()
    assert model.clip_attention.weight.grad.abs().sum() > 0  # the weak clips train the attention readout
    # evaluation: the same loss, and clip scores for the tagging metrics
    model.eval()
    with torch.no_grad():
        eval_loss, eval_outputs = trainer.compute_loss(model, dict(mixed_batch), return_outputs=True)
    torch.testing.assert_close(eval_loss, expected["label_loss"])
    assert set(eval_outputs) == {"logits"} and eval_outputs["logits"].shape == (4, 527)


def test_strong_labels_need_a_frame_student(tmp_path, encoder, mixed_batch):
    torch.manual_seed(0)
    clip_student = DassForAudioClassification(frame_student(encoder).config)
    trainer = DassDistillationTrainer(model=clip_student, args=training_args(tmp_path, distillation_loss="none"))
    with pytest.raises(ValueError, match="DassForAudioFrameClassification"):
        trainer.compute_loss(clip_student.train(), dict(mixed_batch))


@pytest.mark.parametrize("kind", ["kldiv", "bce"])
def test_per_step_distillation_from_a_teacher_or_precomputed_frame_logits(tmp_path, encoder, mixed_batch, kind):
    student, teacher = frame_student(encoder), frame_student(encoder, seed=1)
    args = training_args(tmp_path, distillation_loss=kind, distillation_weight=0.4)
    online = DassDistillationTrainer(model=copy.deepcopy(student), args=args, teacher_model=teacher)
    offline = DassDistillationTrainer(model=copy.deepcopy(student), args=args)
    inputs = mixed_batch["input_values"]
    with torch.no_grad():
        teacher_steps = teacher(inputs).logits  # (4, 25, 527): the 40 ms grid
        coarse = DassForAudioClassification(teacher.config).eval()
        coarse.load_state_dict(teacher.state_dict())
        coarse_steps = coarse(inputs, return_frame_logits=True).frame_logits  # (4, 4, 527): 0.32 s, as precomputed
        student_out = student.eval()(inputs, return_clip_logits=True)
    assert teacher_steps.shape == (4, 25, 527) and coarse_steps.shape == (4, 4, 527)
    online.model.train()
    offline.model.train()
    online_loss = online.compute_loss(online.model, dict(mixed_batch))
    offline_loss = offline.compute_loss(offline.model, {**mixed_batch, "teacher_logits": coarse_steps})
    assert online_loss.item() == pytest.approx(offline_loss.item(), rel=1e-5)

    mask = mixed_batch["frame_mask"]
    torch.testing.assert_close(upsample_frame_logits(coarse_steps, 8, 25), teacher_steps)
    distilled = distillation_loss(student_out.logits[mask], teacher_steps[mask], kind)
    frames = FrameTargets(mixed_batch["frame_labels"], mixed_batch["strong"], mask)
    supervised = mixed_label_loss(student_out.clip_logits, mixed_batch["labels"], None, student_out.logits, frames)
    assert online_loss.item() == pytest.approx((0.6 * supervised["label_loss"] + 0.4 * distilled).item(), rel=1e-5)
    assert "teacher_loss" not in online._part_counts  # a per-step teacher has no clip logits to score

    with pytest.raises(ValueError, match="frame_upsampling"):
        offline.compute_loss(offline.model, {**mixed_batch, "teacher_logits": teacher_steps[:, :24]})


def test_a_short_mixed_run_trains_and_evaluates(tmp_path, encoder):
    rows = [row(i, 1.0 if i % 2 else 0.7, [MUSIC] if i % 3 else [DOG], STRONG_EVENTS if i % 2 else None) for i in range(8)]
    model = frame_student(encoder, clip_pooling="linear_softmax")
    args = training_args(tmp_path, distillation_loss="none", max_steps=3, per_device_train_batch_size=4,
                         per_device_eval_batch_size=4)  # fmt: skip
    trainer = DassDistillationTrainer(
        model=model, args=args, train_dataset=rows, eval_dataset=rows[:4], data_collator=strong_collator(encoder),
        compute_metrics=compute_tagging_metrics,
    )  # fmt: skip
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 3 and all("label_loss" in entry for entry in logged)
    assert {"frame_loss", "clip_loss"} <= set().union(*logged)
    metrics = trainer.evaluate()
    assert np.isfinite(metrics["eval_loss"]) and "eval_mAP" in metrics


def test_bce_of_the_hand_helper_agrees_with_torch():
    # the reference above must itself be right
    logits, targets = np.array([[0.3, -2.0]]), np.array([[1.0, 0.0]])
    expected = F.binary_cross_entropy_with_logits(torch.tensor(logits), torch.tensor(targets)).item()
    assert bce(logits, targets) == pytest.approx(expected, rel=1e-12)
