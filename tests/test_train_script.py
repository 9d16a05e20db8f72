"""scripts/train_dass.py and scripts/precompute_teacher_logits.py end to end on CPU: tiny models saved to folders,
a tiny AudioSet-schema dataset streamed from parquet shards, no downloads."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Audio, load_dataset
from safetensors.torch import load_file
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification, pipeline

from tests.test_data import MAX_LENGTH, labels_csv, write_audioset_shards
from tests.test_distillation import tiny_ast, tiny_student
from transformers_dass import DassFeatureExtractor, DassForAudioClassification
from transformers_dass.audio.decoding import decode_audio
from transformers_dass.training.data import LabelEncoder
from transformers_dass.training.distillation import average_checkpoints

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the script is being executed
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Folders of a tiny student, a tiny AST teacher (both over the 527 AudioSet labels) and the data."""
    root = tmp_path_factory.mktemp("script")
    encoder = LabelEncoder.from_csv(labels_csv())
    tiny_student(encoder).save_pretrained(root / "student")
    DassFeatureExtractor().save_pretrained(root / "student")
    tiny_ast(encoder).save_pretrained(root / "teacher")
    write_audioset_shards(root / "data")
    write_audioset_shards(root / "data", shards=1, clips_per_shard=8, prefix="eval")
    return root


def common_args(root: Path, output_dir: Path, steps: int) -> list[str]:
    return [
        "--model_name_or_path",
        str(root / "student"),
        "--train_files",
        str(root / "data" / "train-*.parquet"),
        "--streaming",
        "--labels_csv",
        str(labels_csv()),
        "--max_length",
        str(MAX_LENGTH),
        "--timem",
        "20",
        "--shuffle_buffer_size",
        "8",
        "--shuffle_input_shards",
        "1",
        "--output_dir",
        str(output_dir),
        "--max_steps",
        str(steps),
        "--per_device_train_batch_size",
        "4",
        "--per_device_eval_batch_size",
        "4",
        "--learning_rate",
        "3e-3",
        "--warmup_steps",
        "1",
        "--lr_scheduler_type",
        "cosine",
        "--logging_steps",
        "1",
        "--report_to",
        "none",
        "--seed",
        "0",
        "--use_cpu",
        "--disable_tqdm",
        "true",
    ]


def test_train_script_distils_evaluates_averages_and_saves_a_pipeline_ready_model(setup):
    output_dir = setup / "run"
    metrics = load_script("train_dass").main(
        common_args(setup, output_dir, steps=4)
        + [
            "--eval_files",
            str(setup / "data" / "eval-*.parquet"),
            "--teacher_model_name_or_path",
            str(setup / "teacher"),
            "--distillation_loss",
            "kldiv",
            "--distillation_weight",
            "0.5",
            "--save_steps",
            "2",
            "--weight_averaging_start",
            "2",
            "--weight_averaging_end",
            "4",
            "--weight_averaging_unit",
            "step",
        ]
    )
    assert 0 < metrics["eval_mAP"] <= 1 and 0 <= metrics["eval_mAUC"] <= 1

    state = json.loads((output_dir / "trainer_state.json").read_text())
    train_logs = [entry for entry in state["log_history"] if "loss" in entry]
    assert len(train_logs) == 4 and all(
        {"label_loss", "distillation_loss", "teacher_loss"} <= set(e) for e in train_logs
    )

    # The saved weights are the mean of the checkpoints of steps 2 and 4.
    averaged = average_checkpoints([output_dir / "checkpoint-2", output_dir / "checkpoint-4"])
    saved = load_file(str(output_dir / "model.safetensors"))
    for name, tensor in averaged.items():
        torch.testing.assert_close(saved[name].float(), tensor, msg=name)

    model = AutoModelForAudioClassification.from_pretrained(output_dir)
    extractor = AutoFeatureExtractor.from_pretrained(output_dir)
    assert isinstance(model, DassForAudioClassification) and isinstance(extractor, DassFeatureExtractor)
    assert extractor.max_length == MAX_LENGTH and model.config.label_mids[0] == "/m/09x0r"
    assert model.config.id2label[137] == "Music"
    assert model.config.problem_type == "multi_label_classification"  # multi-hot targets: sigmoid scores
    classifier = pipeline("audio-classification", model=str(output_dir))
    tone = np.sin(2 * np.pi * 900 * np.arange(16000) / 16000).astype(np.float32)
    predictions = classifier({"raw": tone, "sampling_rate": 16000}, top_k=3)
    assert len(predictions) == 3 and all(p["label"] in set(model.config.id2label.values()) for p in predictions)


def test_precomputed_teacher_logits_train_like_the_online_teacher(setup):
    precompute = load_script("precompute_teacher_logits")
    logits_dir, with_audio_dir = setup / "logits", setup / "with_audio"
    for mode, folder in (("logits_only", logits_dir), ("with_audio", with_audio_dir)):
        info = precompute.main(
            [
                "--teacher_model_name_or_path",
                str(setup / "teacher"),
                "--data_files",
                str(setup / "data" / "train-*.parquet"),
                "--streaming",
                "--output_dir",
                str(folder),
                "--mode",
                mode,
                "--max_length",
                str(MAX_LENGTH),
                "--batch_size",
                "5",
                "--rows_per_shard",
                "10",
                "--device",
                "cpu",
            ]
        )
        assert info["clips_written"] == 16 and info["shards"] == 2 and info["clips_skipped"] == {}

    # Offline logits are what the teacher computes on the student's features of the clip.
    table = load_dataset(
        "parquet", data_files=str(logits_dir / "*.parquet"), split="train", cache_dir=str(setup / "cache")
    )
    assert table.column_names == ["video_id", "teacher_logits"] and len(table) == 16
    audio = load_dataset(
        "parquet",
        data_files=str(setup / "data" / "train-00000-*.parquet"),
        split="train",
        cache_dir=str(setup / "cache"),
    ).cast_column("audio", Audio(decode=False))
    row = audio[3]
    features = DassFeatureExtractor(max_length=MAX_LENGTH)(
        decode_audio(row["audio"]), sampling_rate=16000, return_tensors="pt", truncation=True
    )
    teacher = AutoModelForAudioClassification.from_pretrained(setup / "teacher").eval()
    with torch.no_grad():
        expected = teacher(input_values=features["input_values"]).logits[0].numpy()
    stored = np.asarray(table[table["video_id"].index(row["video_id"])]["teacher_logits"], dtype=np.float32)
    np.testing.assert_allclose(stored, expected, rtol=1e-5, atol=1e-5)

    train = load_script("train_dass").main
    train(
        common_args(setup, setup / "run_table", steps=2)
        + [
            "--teacher_logits_files",
            str(logits_dir / "*.parquet"),
            "--class_balanced",
            "--dataset_cache_dir",
            str(setup / "cache"),
        ]
    )
    assert (setup / "run_table" / "label_counts.json").exists()
    args = common_args(setup, setup / "run_column", steps=2)
    args[args.index("--train_files") + 1] = str(with_audio_dir / "*.parquet")
    train(args + ["--teacher_logits_column", "teacher_logits", "--distillation_loss", "bce"])
    for run in ("run_table", "run_column"):
        logs = json.loads((setup / run / "trainer_state.json").read_text())["log_history"]
        assert any("distillation_loss" in entry for entry in logs)
        assert (setup / run / "model.safetensors").exists() and (setup / run / "preprocessor_config.json").exists()


def test_train_script_refuses_ambiguous_teachers(setup):
    with pytest.raises(ValueError, match="not both"):
        load_script("train_dass").main(
            common_args(setup, setup / "bad", steps=1)
            + ["--teacher_model_name_or_path", str(setup / "teacher"), "--teacher_logits_column", "teacher_logits"]
        )


def test_strong_labels_train_a_frame_model_distilled_per_step(setup):
    # AudioSet-strong rows for half the clips (segment ids YTID_STARTMS; the clips' video_id is the YTID)
    rows = ["segment_id\tstart_time_seconds\tend_time_seconds\tlabel"]
    rows += [f"clip{i:04d}_30000\t0.1\t0.6\t/m/09x0r" for i in range(1, 16, 2)]
    (setup / "strong.tsv").write_text("\n".join(rows) + "\n")
    output_dir = setup / "run_strong"
    load_script("train_dass").main(
        common_args(setup, output_dir, steps=2)
        + [
            "--strong_labels_files",
            str(setup / "strong.tsv"),
            "--clip_pooling",
            "linear_softmax",
            "--teacher_model_name_or_path",
            str(setup / "student"),  # a DASS teacher, read per step
            "--teacher_per_step",
            "--distillation_loss",
            "bce",
            "--dataset_cache_dir",
            str(setup / "cache"),
        ]
    )
    logs = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    logged = set().union(*(entry for entry in logs if "loss" in entry))
    assert {"label_loss", "frame_loss", "distillation_loss"} <= logged
    config = json.loads((output_dir / "config.json").read_text())
    assert config["architectures"] == ["DassForAudioFrameClassification"] and config["clip_pooling"] == "linear_softmax"
    assert isinstance(AutoModelForAudioClassification.from_pretrained(output_dir), DassForAudioClassification)
