"""Audio Needle In A Haystack: haystack placement, noise level, chunked fbank, AST position embeddings, and
scripts/run_niah.py end to end on CPU (tiny DASS and AST, a tiny AudioSet-schema dataset, no downloads)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from sklearn.metrics import average_precision_score
from transformers import ASTForAudioClassification

from tests.fbank_tolerance import assert_log_mel_close, centred
from tests.test_data import CLASSES, labels_csv, write_audioset_shards
from tests.test_distillation import tiny_ast, tiny_student
from tests.test_train_script import load_script
from transformers_dass import (
    DassFeatureExtractor,
    DassForAudioClassification,
    make_haystack,
    make_haystack_waveform,
)
from transformers_dass.audio.decoding import decode_audio
from transformers_dass.audio.fbank import kaldi_fbank
from transformers_dass.evaluation.niah import haystack as niah
from transformers_dass.training.data import LabelEncoder, load_audio_dataset

SR = 16000


def rms(x: torch.Tensor) -> float:
    return float(x.double().square().mean().sqrt())


# ------------------------------------------------------------------------------------------------------------
# placement
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("position, start", [(0.0, 0), (0.5, 125), (1.0, 150), (0.9, 150), (0.3, 75)])
def test_zeros_haystack_places_the_needle_at_the_position(position, start):
    needle = torch.randn(100, 16) + 3.0  # no zero rows
    haystack = make_haystack(needle, 250, position)
    assert haystack.shape == (250, 16) and haystack.dtype == torch.float32
    # start = int(250 * position), clamped to 250 - 100 so that the needle ends at the last frame at most
    assert torch.equal(haystack[start : start + 100], needle)
    outside = torch.cat([haystack[:start], haystack[start + 100 :]])
    assert outside.shape[0] == 150 and torch.count_nonzero(outside) == 0


def test_haystack_accepts_numpy_and_equals_the_needle_when_as_long():
    needle = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    haystack = make_haystack(needle, 64, 1.0, "white", needle_waveform=np.ones(400, np.float32), snr_db=0.0)
    assert isinstance(haystack, torch.Tensor) and np.array_equal(haystack.numpy(), needle)


def test_waveform_haystack_adds_the_needle_at_the_position():
    needle = torch.randn(1000)
    for position, start in [(0.0, 0), (0.5, 2000), (1.0, 3000)]:
        haystack = make_haystack_waveform(needle, 4000, position)  # zeros = digital silence
        expected = torch.zeros(4000)
        expected[start : start + 1000] = needle
        assert torch.equal(haystack, expected)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"total_frames": 50}, "shorter than the needle"),
        ({"position": 1.5}, r"\[0, 1\]"),
        ({"position": float("nan")}, "finite"),
        ({"total_frames": 0}, "positive integer"),
        ({"noise": "white"}, "needle_waveform"),
        ({"noise": "white", "needle_waveform": torch.zeros(800), "snr_db": 10.0}, "silent"),
        ({"noise": "white", "needle_waveform": torch.ones(800), "snr_db": float("inf")}, "finite"),
        ({"noise": "no_such_noise.wav", "needle_waveform": torch.ones(800), "snr_db": 0.0}, "not found"),
        ({"noise": torch.ones(4000), "needle_waveform": torch.ones(800), "snr_db": 0.0}, "constant"),
    ],
)
def test_haystack_refuses_bad_arguments(kwargs, message):
    arguments = {"needle": torch.randn(100, 8), "total_frames": 300, "position": 0.5, **kwargs}
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        make_haystack(**arguments)


def test_haystack_refuses_nan_needles_and_wrong_shapes():
    with pytest.raises(ValueError, match="NaN"):
        make_haystack(torch.full((10, 4), math.nan), 20, 0.0)
    with pytest.raises(ValueError, match=r"\(frames, mel_bins\)"):
        make_haystack(torch.randn(10), 20, 0.0)


# ------------------------------------------------------------------------------------------------------------
# noise level and determinism
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 20.0])
def test_white_noise_is_centred_and_at_the_snr_of_the_needle(snr_db):
    needle = 0.2 * torch.randn(8000) + 0.05  # with a DC offset: the SNR uses the needle's plain RMS
    haystack = make_haystack_waveform(needle, 40000, 0.5, "white", snr_db=snr_db, seed=3)
    noise = haystack.clone()
    noise[20000:28000] -= needle
    assert abs(float(noise.double().mean())) < 1e-6
    assert 20 * math.log10(rms(needle) / rms(noise)) == pytest.approx(snr_db, abs=1e-3)


def test_file_noise_is_looped_centred_scaled_and_seeded(tmp_path):
    t = np.arange(3000) / SR
    recording = (0.3 + 0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)  # DC offset 0.3
    path = tmp_path / "noise.wav"
    soundfile.write(path, recording, SR, subtype="FLOAT")
    needle_rms = 0.25
    noise = niah.make_noise(str(path), 10000, needle_rms, 6.0, seed=1)  # longer than the file: looped
    assert noise.shape == (10000,)
    assert abs(float(noise.double().mean())) < 1e-6
    assert 20 * math.log10(needle_rms / rms(noise)) == pytest.approx(6.0, abs=1e-3)
    # The loop: samples 3000 apart are equal.
    torch.testing.assert_close(noise[:7000], noise[3000:10000], atol=1e-6, rtol=0)
    assert torch.equal(noise, niah.make_noise(torch.from_numpy(recording), 10000, needle_rms, 6.0, seed=1))
    assert not torch.equal(noise, niah.make_noise(str(path), 10000, needle_rms, 6.0, seed=2))


def test_white_noise_is_reproducible_and_prefix_consistent():
    first = niah.make_noise("white", 5000, 1.0, 0.0, seed=(4, 7))
    assert torch.equal(first, niah.make_noise("white", 5000, 1.0, 0.0, seed=(4, 7)))
    assert not torch.equal(first, niah.make_noise("white", 5000, 1.0, 0.0, seed=(4, 8)))
    # The raw samples do not depend on the length; only the centring and scaling (over the whole noise) do, so the
    # first 5000 samples of a longer noise are an affine map of the shorter one: equal once standardised.
    longer = niah.make_noise("white", 9000, 1.0, 0.0, seed=(4, 7))[:5000].double()

    def standardise(x):
        return (x - x.mean()) / x.std()

    torch.testing.assert_close(standardise(longer), standardise(first.double()), atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------------------------
# chunked fbank
# ------------------------------------------------------------------------------------------------------------


def test_chunked_fbank_equals_one_call_on_the_whole_waveform():
    waveform = torch.randn(SR * 3 + 123)
    sizes = [0, 37, 399, 400, 401, 160, 5000, 0, 12345]
    sizes.append(waveform.shape[0] - sum(sizes))
    chunks = list(torch.split(waveform, sizes))
    blocks = list(niah.chunked_fbank(chunks))
    assert_log_mel_close(torch.cat(blocks), kaldi_fbank(waveform), waveform.numpy(), what="chunked fbank")


def test_noise_haystack_frames_are_the_features_of_the_scaled_noise(monkeypatch):
    # Small generation chunks so that the noise goes through several chunks of the chunked fbank.
    monkeypatch.setattr(niah, "NOISE_CHUNK_SAMPLES", 7001)
    needle_wave = 0.1 * torch.randn(SR)
    extractor = DassFeatureExtractor(max_length=None)
    needle = extractor(needle_wave.numpy(), sampling_rate=SR, return_tensors="pt")["input_values"][0]
    total = needle.shape[0] + 300
    start = niah.needle_start(total, needle.shape[0], 0.4)
    haystack = make_haystack(needle, total, 0.4, "white", needle_waveform=needle_wave, snr_db=5.0, seed=11)

    noise = niah.make_noise("white", niah.haystack_samples(300), rms(needle_wave), 5.0, seed=11)
    reference = extractor(noise.numpy(), sampling_rate=SR, return_tensors="pt")["input_values"][0]  # one call
    assert reference.shape[0] == 300
    spliced = torch.cat([haystack[:start], haystack[start + needle.shape[0] :]])
    assert_log_mel_close(spliced, reference, centred(noise), scale=1 / (2 * extractor.std), what="noise frames")
    assert torch.equal(haystack[start : start + needle.shape[0]], needle)


def test_haystack_features_equal_the_feature_extractor(monkeypatch):
    monkeypatch.setattr(niah, "NOISE_CHUNK_SAMPLES", 9999)
    waveform = make_haystack_waveform(0.3 * torch.randn(SR), 3 * SR, 0.5, "white", snr_db=3.0, seed=0) + 0.01
    expected = DassFeatureExtractor(max_length=None)(waveform.numpy(), sampling_rate=SR)["input_values"][0]
    got = niah.haystack_features(waveform)
    assert got.shape == expected.shape
    assert_log_mel_close(got, expected, centred(waveform), scale=1 / (2 * DassFeatureExtractor().std), what="haystack features")


# ------------------------------------------------------------------------------------------------------------
# AST position embeddings
# ------------------------------------------------------------------------------------------------------------


def test_ast_embeddings_interpolate_along_time_and_keep_the_tokens():
    frequency, old_time, new_time, hidden = 3, 5, 12, 4
    table = torch.randn(1, 2 + frequency * old_time, hidden)
    out = niah.ast_position_embeddings(table, frequency, new_time)
    assert out.shape == (1, 2 + frequency * new_time, hidden)
    assert torch.equal(out[:, :2], table[:, :2])
    # Reference: linear interpolation with half-pixel centres (bilinear, align_corners=False), clamped at the ends.
    grid = table[0, 2:].reshape(frequency, old_time, hidden).numpy()
    source = np.clip((np.arange(new_time) + 0.5) * old_time / new_time - 0.5, 0, old_time - 1)
    expected = np.zeros((frequency, new_time, hidden))
    for f in range(frequency):
        for c in range(hidden):
            expected[f, :, c] = np.interp(source, np.arange(old_time), grid[f, :, c])
    np.testing.assert_allclose(out[0, 2:].reshape(frequency, new_time, hidden).numpy(), expected, atol=1e-6)


def test_ast_embeddings_cut_from_the_middle_or_stay_when_not_longer():
    table = torch.randn(1, 2 + 2 * 9, 4)
    assert torch.equal(niah.ast_position_embeddings(table, 2, 9), table)
    short = niah.ast_position_embeddings(table, 2, 4)
    grid = table[0, 2:].reshape(2, 9, 4)
    assert torch.equal(short[0, 2:].reshape(2, 4, 4), grid[:, 2:6])  # 9 // 2 - 4 // 2 = 2


def test_ast_sinusoidal_embeddings_follow_the_formula():
    out = niah.ast_position_embeddings(torch.zeros(1, 2 + 3 * 4, 6), 3, 7, method="sinusoidal")
    assert out.shape == (1, 23, 6)
    p, i = 17, 2  # channel 2i = 4 is sin, 2i + 1 = 5 is cos of p / 10000^(2i / 6)
    assert float(out[0, p, 4]) == pytest.approx(math.sin(p / 10000 ** (4 / 6)), abs=1e-6)
    assert float(out[0, p, 5]) == pytest.approx(math.cos(p / 10000 ** (4 / 6)), abs=1e-6)
    with pytest.raises(ValueError, match="interpolate"):
        niah.ast_position_embeddings(torch.zeros(1, 14, 6), 3, 7, method="nearest")


# ------------------------------------------------------------------------------------------------------------
# scripts/run_niah.py
# ------------------------------------------------------------------------------------------------------------

NEEDLE_FRAMES = 100  # the tiny models' 1.0 s needle; 1 s haystack = 102 frames, 2 s = 205, 4 s = 410


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("niah")
    encoder = LabelEncoder.from_csv(labels_csv())
    tiny_student(encoder).save_pretrained(root / "dass")
    DassFeatureExtractor().save_pretrained(root / "dass")
    tiny_ast(encoder).save_pretrained(root / "ast")  # max_length 100 frames: 12 x 9 patches
    write_audioset_shards(root / "data", shards=1, clips_per_shard=6, prefix="eval")
    return root


def niah_args(setup: Path, output: Path, *extra: str) -> list[str]:
    return [
        "--data_files", str(setup / "data" / "eval-*.parquet"),
        "--labels_csv", str(labels_csv()),
        "--needle_frames", str(NEEDLE_FRAMES),
        "--batch_size", "4",
        "--device", "cpu",
        "--disable_tqdm", "true",
        "--output_dir", str(output),
        *extra,
    ]  # fmt: skip


class ForwardLog:
    """Records the input frames of every forward of a model class (and optionally fails beyond a length)."""

    def __init__(self, monkeypatch, cls, fail_above: int | None = None):
        self.frames: list[int] = []
        original = cls.forward

        def forward(model, input_values=None, **kwargs):
            self.frames.append(input_values.shape[1])
            if fail_above is not None and input_values.shape[1] > fail_above:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB (simulated)")
            return original(model, input_values=input_values, **kwargs)

        monkeypatch.setattr(cls, "forward", forward)


def test_run_niah_sweeps_models_records_oom_plots_and_resumes(setup, tmp_path, monkeypatch):
    script = load_script("run_niah")
    output = tmp_path / "out"
    models = ["--models", f"dass={setup / 'dass'}", f"ast={setup / 'ast'}"]
    dass_log = ForwardLog(monkeypatch, DassForAudioClassification)
    ast_log = ForwardLog(monkeypatch, ASTForAudioClassification, fail_above=300)
    records = script.main(
        niah_args(setup, output, *models, "--lengths_seconds", "1", "4", "--positions", "0", "1")
    )
    assert len(records) == 8
    status = {(r["model"], r["haystack_seconds"], r["needle_position"]): r["status"] for r in records}
    assert status[("ast", 4.0, 0.0)] == status[("ast", 4.0, 1.0)] == "oom"  # 410 frames > 300: recorded, no crash
    assert all(s == "ok" for k, s in status.items() if k[:2] != ("ast", 4.0))
    assert all(r["num_needles"] == 6 for r in records if r["status"] == "ok")
    assert sorted(set(dass_log.frames)) == [102, 410] and sorted(set(ast_log.frames)) == [102, 410]

    # The saved files hold the same records; the figure is written.
    saved = json.loads((output / "results.json").read_text())["results"]
    assert len(saved) == 8
    with open(output / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["model"], r["status"]) for r in rows] == [(r["model"], r["status"]) for r in saved]
    assert (output / "niah.png").stat().st_size > 0

    # Independent check of one point: DASS, 1 s haystack, needle first, recomputed by hand with sklearn.
    model = DassForAudioClassification.from_pretrained(setup / "dass").eval()
    encoder = LabelEncoder.from_csv(labels_csv())
    extractor = DassFeatureExtractor(max_length=NEEDLE_FRAMES)
    scores, targets = [], []
    for row in load_audio_dataset(data_files=str(setup / "data" / "eval-*.parquet"), streaming=True):
        features = extractor(decode_audio(row["audio"]), sampling_rate=SR, return_tensors="pt", truncation=True)
        features = features["input_values"]
        haystack = torch.zeros(1, 102, 128)
        haystack[0, :NEEDLE_FRAMES] = features[0]
        with torch.no_grad():
            scores.append(torch.sigmoid(model(haystack).logits)[0].numpy())
        targets.append(encoder.encode(row["labels"]))
    scores, targets = np.stack(scores), np.stack(targets)
    present = targets.sum(0) > 0
    expected = np.mean([average_precision_score(targets[:, k], scores[:, k]) for k in np.flatnonzero(present)])
    (record,) = [r for r in records if (r["model"], r["haystack_seconds"], r["needle_position"]) == ("dass", 1.0, 0.0)]
    assert record["mAP"] == pytest.approx(expected, abs=1e-4)
    assert record["skipped_classes"] == 527 - int(present.sum())

    # Rerun with one more length: only the new points run (AST with position embeddings stretched to 19 patch
    # columns); the out-of-memory points are not retried.
    dass_log.frames.clear()
    ast_log.frames.clear()
    records = script.main(
        niah_args(setup, output, *models, "--lengths_seconds", "1", "2", "4", "--positions", "0", "1")
    )
    assert len(records) == 12
    assert set(dass_log.frames) == {205} and set(ast_log.frames) == {205}
    two_seconds = [r for r in records if r["haystack_seconds"] == 2.0]
    assert [r["status"] for r in two_seconds] == ["ok"] * 4
    assert {r["batch_size"] for r in two_seconds} == {1}  # twice the needle: 4 * 100 // 205 needles per call

    # Another seed is another run: refused instead of mixing results.
    with pytest.raises(ValueError, match="different run"):
        script.main(niah_args(setup, output, *models, "--lengths_seconds", "1", "--seed", "1"))


def test_run_niah_reads_an_audio_folder_with_noise_at_the_waveform_level(setup, tmp_path):
    script = load_script("run_niah")
    folder = tmp_path / "clips"
    folder.mkdir()
    t = np.arange(int(1.2 * SR)) / SR
    entries = []
    for i, (mid, name, tone) in enumerate(CLASSES[:3]):
        soundfile.write(folder / f"clip{i}.wav", (0.3 * np.sin(2 * np.pi * tone * t)).astype(np.float32), SR)
        entries.append((f"clip{i}.wav", f"{mid};{CLASSES[3][1]}" if i == 0 else name))  # mids and display names
    soundfile.write(folder / "unknown.wav", (0.3 * np.sin(2 * np.pi * 500 * t)).astype(np.float32), SR)
    entries.append(("unknown.wav", "/m/not_a_label"))
    with open(tmp_path / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "labels"])
        writer.writerows(entries)

    args = niah_args(setup, tmp_path / "out", "--models", str(setup / "dass"))
    args = args[2:]  # no --data_files
    records = script.main(
        [
            *args,
            "--audio_dir", str(folder),
            "--labels_file", str(tmp_path / "labels.csv"),
            "--lengths_seconds", "2",
            "--positions", "0.5",
            "--noise", "white",
            "--snr_db", "10",
            "--haystack_level", "waveform",
        ]
    )  # fmt: skip
    (record,) = records
    assert record["model"] == "dass" and record["status"] == "ok" and record["noise"] == "white"
    assert record["num_needles"] == 3 and record["skipped_needles"] == 1
    assert record["snr_db"] == 10.0 and record["haystack_level"] == "waveform"


def test_run_niah_refuses_haystacks_shorter_than_the_needle(setup, tmp_path):
    script = load_script("run_niah")
    with pytest.raises(ValueError, match="shorter than the needle"):
        script.main(niah_args(setup, tmp_path, "--models", str(setup / "dass"), "--lengths_seconds", "0.5"))


def test_run_niah_scores_every_clip_readout_from_one_forward_and_resumes(setup, tmp_path, monkeypatch):
    script = load_script("run_niah")
    models = ["--models", f"dass={setup / 'dass'}", f"ast={setup / 'ast'}"]
    dass_log = ForwardLog(monkeypatch, DassForAudioClassification)
    args = niah_args(setup, tmp_path / "both", *models, "--lengths_seconds", "2", "--positions", "0.5")
    records = script.main(args + ["--clip_pooling", "mean", "max"])
    pairs = sorted((r["model"], r["clip_pooling"]) for r in records)
    assert pairs == [("ast", "mean"), ("dass", "max"), ("dass", "mean")]
    assert len(dass_log.frames) == 6  # one forward per haystack (6 needles, batch 4 * 100 // 205 = 1) for both
    mean_args = niah_args(setup, tmp_path / "mean", *models, "--lengths_seconds", "2", "--positions", "0.5")
    mean_only = script.main(mean_args)
    by_key = {(r["model"], r["clip_pooling"]): r["mAP"] for r in records}
    assert {(r["model"], r["clip_pooling"]): r["mAP"] for r in mean_only} == {
        k: v for k, v in by_key.items() if k[1] == "mean"
    }
    with open(tmp_path / "both" / "results.csv", newline="") as handle:
        assert {row["clip_pooling"] for row in csv.DictReader(handle)} == {"mean", "max"}
    dass_log.frames.clear()
    assert len(script.main(args + ["--clip_pooling", "mean", "max"])) == 3 and dass_log.frames == []  # resumed
    with pytest.raises(ValueError, match="clip_pooling"):
        script.main(args + ["--clip_pooling", "median"])
