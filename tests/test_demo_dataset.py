"""scripts/make_demo_dataset.py: a few clips of each kind, read back through the AudioSet-schema loader.

Needs the Debian tools the script drives (`apt-get install espeak-ng sox`); skipped without them.
"""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import soundfile

from tests.test_train_script import load_script
from transformers_dass.audio.decoding import decode_audio
from transformers_dass.training.data import LabelEncoder, load_audio_dataset

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="espeak-ng and sox are not installed (apt-get install espeak-ng sox)",
)

ARGS = [
    "--train-singles", "7", "--train-scenes", "2", "--test-singles", "5", "--test-scenes", "1",
    "--splits", "train", "test", "--babble-tracks", "1", "--babble-seconds", "10", "--shards", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def script():
    return load_script("make_demo_dataset")


@pytest.fixture(scope="module")
def dataset_dir(script, tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    assert script.main(["--output-dir", str(folder), "--workers", "2", *ARGS]) == 0
    return folder


def metadata(folder, split):
    return [json.loads(line) for line in (folder / f"{split}.jsonl").read_text().splitlines()]


def test_splits_read_back_in_the_audioset_schema(dataset_dir, script):
    encoder = LabelEncoder.from_csv(dataset_dir / "labels.csv")
    assert encoder.names == script.DIGITS + script.EVENTS
    rows = list(load_audio_dataset(data_files=str(dataset_dir / "train-*.parquet"), streaming=True))
    lines = metadata(dataset_dir, "train")
    assert [row["video_id"] for row in rows] == [line["video_id"] for line in lines]
    for row, line in zip(rows, lines):
        assert soundfile.info(io.BytesIO(row["audio"]["bytes"])).samplerate == 16000
        waveform = decode_audio(row["audio"])
        assert len(waveform) / 16000 == pytest.approx(line["seconds"], abs=1e-3)
        assert 0 < np.abs(waveform).max() <= 1.0
        assert row["human_labels"] == line["labels"] == sorted({e["label"] for e in line["events"]}, key=encoder.names.index)
        assert encoder.encode(row["labels"]).sum() == len(row["labels"])  # every mid is in labels.csv
    singles, scenes = lines[:7], lines[7:]
    assert [line["labels"] for line in singles] == [[name] for name in script.SINGLE_CYCLE[:7]]
    assert all(1.0 <= line["seconds"] <= 3.1 for line in singles)
    assert all(line["seconds"] == script.SCENE_SECONDS and 1 <= len(line["events"]) <= 4 for line in scenes)


def test_test_split_speaks_with_held_out_voices_and_rates(dataset_dir, script):
    assert not set(script.TRAIN_VARIANTS) & set(script.TEST_VARIANTS)
    for split, variants, bands in (
        ("train", script.TRAIN_VARIANTS, script.TRAIN_RATES),
        ("test", script.TEST_VARIANTS, script.TEST_RATES),
    ):
        spoken = [e for line in metadata(dataset_dir, split) for e in line["events"] if "voice" in e]
        assert spoken, f"no digits in the {split} split"
        for event in spoken:
            assert event["voice"].split("+")[1] in variants
            assert any(low <= event["rate_wpm"] < high for low, high in bands)


def test_same_seed_same_dataset_whatever_the_worker_count(dataset_dir, script, tmp_path):
    assert script.main(["--output-dir", str(tmp_path), "--workers", "1", *ARGS]) == 0
    for name in ("train-00000-of-00001.parquet", "test.jsonl", "labels.csv", "noise/babble_test.wav"):
        assert (tmp_path / name).read_bytes() == (dataset_dir / name).read_bytes(), name


def test_scaled_background_has_the_requested_snr(script):
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(16000).astype(np.float32) + 3.0
    scaled = script.scale_to_snr(noise, signal_rms=0.5, snr_db=10.0)
    assert abs(scaled.mean()) < 1e-6
    assert 20 * np.log10(0.5 / np.sqrt(np.mean(scaled.astype(np.float64) ** 2))) == pytest.approx(10.0, abs=1e-4)


def test_bad_arguments_are_refused(script, tmp_path):
    with pytest.raises(SystemExit):
        script.parse_args(["--output-dir", str(tmp_path), "--train-singles", "-1"])
    with pytest.raises(SystemExit):
        script.parse_args(["--output-dir", str(tmp_path), "--babble-seconds", "5"])
