"""`dass tag` and `transformers_dass.tagging.tag`: rows equal `dass classify` file by file and segments equal
`dass timeline`, whatever the batching, workers and file lengths; Parquet/CSV/JSONL; bad inputs become rows with
their error; resume, a kill in the middle, refusal of other options; a dataset split as input.

The two-process torchrun run is in tests/test_tagging_distributed.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from transformers_dass import (
    DassConfig,
    DassFeatureExtractor,
    DassForAudioClassification,
)
from transformers_dass.audio.io import load_audio
from transformers_dass.cli import main as cli_main
from transformers_dass.inference.classify import timeline_of_file
from transformers_dass.inference.loading import load_model_and_extractor
from transformers_dass.inference.timeline import segments
from transformers_dass.tagging import RunOptionsError, discover_inputs, read_rows, tag
from transformers_dass.tagging.batching import batches_of_equal_length
from transformers_dass.tagging.distributed import share
from transformers_dass.tagging.features import DecodedInput

LABELS = ["alarm", "bird", "car", "dog", "engine"]
# Scores of one clip batched with others vs alone (and features read whole vs in blocks): the same float32
# operations with GEMM rows blocked differently and sums taken in another order; through the tiny model's five
# blocks (reductions of at most a few hundred terms each, LayerNorms re-scaling the error) the logits move by a
# few 1e-6 of their size. The scores (sigmoid, slope <= 1/4) are allowed 1e-4: a real change (another readout,
# padding mixed in, another clip's row) moves them by 1e-2 and more.
SCORE_TOL = 1e-4
# A test run of a tiny model with a short training length, so that clips below and above it both occur in a few
# seconds of audio: clips shorter than 1.28 s are padded to 128 frames (as dass classify pads to 10.24 s).
MAX_LENGTH_FRAMES = 128
# (seconds, rate, channels): three pairs of equal length (batched together) and lengths below and above 1.28 s.
CLIPS = [(1.0, 16000, 1), (1.0, 16000, 1), (0.5, 22050, 1), (2.0, 16000, 1), (2.0, 16000, 2), (1.7, 44100, 1), (3.0, 8000, 1)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny multi-label DASS with large head weights (scores spread over (0, 1), not all near 0.5)."""
    torch.manual_seed(0)
    config = DassConfig(
        dims=[8, 16, 24, 32], depths=[1, 1, 1, 1], num_labels=len(LABELS), drop_path_rate=0.0,
        problem_type="multi_label_classification", id2label=dict(enumerate(LABELS)),
    )  # fmt: skip
    model = DassForAudioClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(40.0)
    folder = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(folder)
    DassFeatureExtractor(max_length=MAX_LENGTH_FRAMES).save_pretrained(folder)
    return folder


def write_clips(folder: Path, clips=CLIPS, seed: int = 0) -> list[Path]:
    """Noise bursts and tones (so that scores vary over time), one file per (seconds, rate, channels)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (seconds, rate, channels) in enumerate(clips):
        n = int(seconds * rate)
        t = np.arange(n) / rate
        signal_ = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) * (t > seconds / 2)
        audio = signal_[:, None] + 0.05 * rng.standard_normal((n, channels))
        path = folder / f"clip{index:02d}.{'flac' if index % 3 == 2 else 'wav'}"
        soundfile.write(path, audio.astype(np.float32), rate)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    return write_clips(tmp_path_factory.mktemp("clips") / "archive")


def classify_json(files, model_dir, capsys, *extra, dtype="float32") -> list[dict]:
    """`dass classify FILES --json --dtype DTYPE` (one entry per file), run file by file as a user would; float32
    by default, as `tag()` runs without a dtype (`--dtype auto` takes bf16 on CPUs with native bf16)."""
    entries = []
    for path in files:
        command = ["classify", str(path), "--model", str(model_dir), "--json", "--top-k", "3", "--dtype", dtype]
        assert cli_main([*command, *extra]) == 0
        entries.append(json.loads(capsys.readouterr().out))
    return entries


@pytest.mark.parametrize(
    "num_workers, batch_size, long_file_seconds",
    [(0, 4, 600.0), (1, 3, 1.5)],  # in process / a DataLoader worker; whole files / files over 1.5 s in blocks
)
def test_rows_equal_classify_file_by_file_and_segments_equal_timeline(
    clips, model_dir, capsys, num_workers, batch_size, long_file_seconds
):
    summary = tag(
        [clips[0].parent], model=str(model_dir), top_k=3, segments=True, threshold=0.5, num_workers=num_workers,
        batch_size=batch_size, long_file_seconds=long_file_seconds, show_progress=False,
    )  # fmt: skip
    rows = summary.rows
    assert [row["id"] for row in rows] == [str(path) for path in clips]  # every file once, in folder order
    assert summary.failed == 0 and summary.tagged_now == len(clips)
    expected = classify_json(clips, model_dir, capsys)
    model, extractor = load_model_and_extractor(str(model_dir))
    for row, entry, path, (seconds, rate, _) in zip(rows, expected, clips, CLIPS):
        assert row["labels"] == [item["label"] for item in entry], path
        np.testing.assert_allclose(row["scores"], [item["score"] for item in entry], atol=SCORE_TOL, rtol=0)
        assert row["clip_pooling"] == entry[0]["clip_pooling"]
        assert row["sample_rate"] == rate and row["duration_s"] == pytest.approx(seconds, abs=1 / rate)
        timeline = timeline_of_file(path, model, extractor, show_progress=False)
        reference = segments(timeline, 0.5)
        assert [(s["start_s"], s["end_s"], s["label"]) for s in row["segments"]] == [
            (s.start, s.end, s.label) for s in reference
        ], path
        np.testing.assert_allclose([s["score"] for s in row["segments"]], [s.score for s in reference], atol=SCORE_TOL)
    # the run saw several lengths, padded and unpadded, and segments that are there to compare
    assert len({row["duration_s"] for row in rows}) >= 5 and sum(len(row["segments"]) for row in rows) >= 3


def test_max_readout_and_top_k_follow_classify(clips, model_dir, capsys):
    rows = tag(clips[:4], model=str(model_dir), top_k=3, clip_pooling="max", num_workers=0, show_progress=False).rows
    expected = classify_json(clips[:4], model_dir, capsys, "--clip-pooling", "max")
    for row, entry in zip(rows, expected):
        assert row["clip_pooling"] == "max" and row["labels"] == [item["label"] for item in entry]
        np.testing.assert_allclose(row["scores"], [item["score"] for item in entry], atol=SCORE_TOL, rtol=0)


def test_batches_hold_one_length_only_and_fill_up():
    def item(position, frames):
        return DecodedInput(position=position, input_values=torch.zeros(frames, 2))

    lengths = [128, 300, 128, 128, 300, 129, 128, 128]
    batches = list(batches_of_equal_length((item(i, n) for i, n in enumerate(lengths)), batch_size=2))
    assert all(len({b.input_values.shape[0] for b in batch}) == 1 for batch in batches)
    assert sorted(b.position for batch in batches for b in batch) == list(range(len(lengths)))
    assert [len(batch) for batch in batches if batch[0].input_values.shape[0] == 128] == [2, 2, 1]


def test_shares_are_disjoint_and_cover_every_input():
    for count in (0, 1, 7, 10):
        for world in (1, 2, 3):
            parts = [share(count, rank, world) for rank in range(world)]
            assert sorted(p for part in parts for p in part) == list(range(count))


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_written_table_reads_back_with_pandas_and_datasets(clips, model_dir, tmp_path, suffix):
    output = tmp_path / f"tags{suffix}"
    summary = tag(clips[:3], model=str(model_dir), output=output, segments=True, num_workers=0, show_progress=False)
    assert summary.rows is None and summary.files == 3
    in_memory = tag(clips[:3], model=str(model_dir), segments=True, num_workers=0, show_progress=False).rows
    assert read_rows(output) == in_memory  # floats written with every digit, lists and nulls kept
    if suffix == ".parquet":
        import datasets
        import pandas

        frame = pandas.read_parquet(output)
        assert list(frame["id"]) == [str(p) for p in clips[:3]] and list(frame["labels"].iloc[0]) == in_memory[0]["labels"]
        loaded = datasets.load_dataset("parquet", data_files=str(output), split="train")
        assert loaded["id"] == [str(p) for p in clips[:3]] and loaded[1]["scores"] == in_memory[1]["scores"]


def write_bad_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    good = write_clips(folder / "good", [(1.0, 16000, 1)])[0]
    paths = {"good": good}
    paths["corrupted"] = folder / "corrupted.wav"
    paths["corrupted"].write_bytes(b"RIFF\x24\x00\x00\x00WAVEthis is not audio")
    paths["empty"] = folder / "empty.wav"
    paths["empty"].write_bytes(b"")
    paths["no_samples"] = folder / "no_samples.wav"
    soundfile.write(paths["no_samples"], np.zeros((0, 1), dtype=np.float32), 16000)
    paths["nan"] = folder / "nan.wav"
    soundfile.write(paths["nan"], np.full(16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    paths["too_short"] = folder / "too_short.wav"
    soundfile.write(paths["too_short"], np.zeros(100, dtype=np.float32), 16000)
    (folder / "readme.txt").write_text("not audio")
    return paths


def test_bad_inputs_become_rows_with_their_error_and_exit_2(model_dir, tmp_path, capsys):
    paths = write_bad_inputs(tmp_path / "mixed")
    manifest = tmp_path / "list.jsonl"
    manifest.write_text(json.dumps({"path": str(paths["good"])}) + "\n" + json.dumps({"path": "gone/missing.wav"}) + "\n")
    output = tmp_path / "tags.jsonl"
    arguments = [str(tmp_path / "mixed"), str(manifest), "--output", str(output), "--model", str(model_dir)]
    code = cli_main(["tag", *arguments, "--num-workers", "0"])
    captured = capsys.readouterr()
    assert code == 2
    rows = {row["id"]: row for row in read_rows(output)}
    missing = str(tmp_path / "gone" / "missing.wav")
    assert set(rows) == {str(p) for p in paths.values()} | {missing}  # the good file once; readme.txt not tagged
    assert rows[str(paths["good"])]["error"] is None and len(rows[str(paths["good"])]["labels"]) == 5
    reasons = {
        "corrupted": "could not decode", "empty": "empty (0 bytes)", "no_samples": "no audio samples",
        "nan": "NaN", "too_short": "100 samples",
    }  # fmt: skip
    for name, reason in reasons.items():
        row = rows[str(paths[name])]
        assert reason in row["error"] and str(paths[name]) in row["error"] and row["labels"] is None, row
        assert f"dass tag: error: {row['error']}" in captured.err
    assert "not found" in rows[missing]["error"] and missing in rows[missing]["error"]
    assert "7 files" in captured.out and "6 failed" in captured.out and "1 non-audio files" in captured.out
    assert "readme.txt" in captured.err  # the skipped file is named in a warning


def test_inputs_from_a_csv_manifest_with_relative_paths(clips, tmp_path):
    manifest = clips[0].parent / "manifest.csv"
    manifest.write_text("path,label\n" + "".join(f"{p.name},x\n" for p in clips[:2]))
    try:
        found = discover_inputs([str(manifest)])
        assert [item.path for item in found.items] == [str(p) for p in clips[:2]]
        with pytest.raises(ValueError, match="--manifest-column"):
            discover_inputs([str(manifest)], manifest_column="file")
    finally:
        manifest.unlink()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover_inputs([str(tmp_path / "nowhere")])


def test_resume_skips_done_inputs_and_other_options_are_refused(clips, model_dir, tmp_path):
    output = tmp_path / "tags.parquet"
    first = tag(clips[:3], model=str(model_dir), output=output, top_k=2, shard_size=2, num_workers=0, show_progress=False)
    assert first.tagged_now == 3 and len(list((tmp_path / "tags.parquet.parts").glob("rank00000-*.parquet"))) == 2
    whole = tag(clips, model=str(model_dir), output=output, top_k=2, shard_size=2, num_workers=0, show_progress=False)
    assert whole.tagged_now == len(clips) - 3 and whole.files == len(clips)  # only the new inputs were tagged
    clean = tag(clips, model=str(model_dir), top_k=2, num_workers=0, show_progress=False).rows
    assert read_rows(output) == clean
    again = tag(clips, model=str(model_dir), output=output, top_k=2, num_workers=0, show_progress=False)
    assert again.tagged_now == 0 and read_rows(output) == clean
    with pytest.raises(RunOptionsError, match="top_k: 2 there, 3 now.*--overwrite"):
        tag(clips, model=str(model_dir), output=output, top_k=3, num_workers=0, show_progress=False)
    with pytest.raises(RunOptionsError, match="segments"):
        tag(clips, model=str(model_dir), output=output, top_k=2, segments=True, num_workers=0, show_progress=False)
    with pytest.raises(RunOptionsError, match="model"):
        tag(clips, model=None, output=output, top_k=2, num_workers=0, show_progress=False)  # the demo model
    replaced = tag(clips[:2], model=str(model_dir), output=output, top_k=3, overwrite=True, num_workers=0, show_progress=False)
    assert replaced.tagged_now == 2 and [len(row["labels"]) for row in read_rows(output)] == [3, 3]
    foreign = tmp_path / "mine.csv"
    foreign.write_text("something else\n")
    with pytest.raises(RunOptionsError, match="not written by `dass tag`"):
        tag(clips[:1], model=str(model_dir), output=foreign, num_workers=0, show_progress=False)


def test_retry_failed_tags_a_repaired_file_again(model_dir, tmp_path):
    broken = tmp_path / "later.wav"
    broken.write_bytes(b"")
    output = tmp_path / "tags.jsonl"
    assert tag([broken], model=str(model_dir), output=output, num_workers=0, show_progress=False).failed == 1
    write_clips(tmp_path / "fixed", [(1.0, 16000, 1)])[0].replace(broken)
    assert tag([broken], model=str(model_dir), output=output, num_workers=0, show_progress=False).tagged_now == 0
    retried = tag([broken], model=str(model_dir), output=output, retry_failed=True, num_workers=0, show_progress=False)
    assert retried.tagged_now == 1 and retried.failed == 0 and read_rows(output)[0]["error"] is None


def test_parquet_without_pyarrow_names_the_extra(clips, model_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` raises ImportError
    with pytest.raises(ImportError, match=r'pip install "transformers-dass\[tag\]"'):
        tag(clips[:1], model=str(model_dir), output=tmp_path / "tags.parquet", num_workers=0)
    assert not (tmp_path / "tags.parquet.parts").exists()  # refused before any work
    assert tag(clips[:1], model=str(model_dir), output=tmp_path / "tags.csv", num_workers=0, show_progress=False).files == 1


def test_dataset_rows_equal_the_files_they_were_made_of(clips, model_dir, tmp_path):
    import datasets

    files = clips[:3]
    table = datasets.Dataset.from_dict(
        {"audio": [{"bytes": p.read_bytes(), "path": p.name} for p in files], "key": ["a", "b", "c"]}
    ).cast_column("audio", datasets.Audio(decode=False))
    table.save_to_disk(str(tmp_path / "saved"))
    from_files = tag(files, model=str(model_dir), num_workers=0, show_progress=False).rows
    from_dataset = tag(dataset=str(tmp_path / "saved"), model=str(model_dir), num_workers=1, show_progress=False).rows
    assert [row["id"] for row in from_dataset] == ["train/0", "train/1", "train/2"]
    assert [row["path"] for row in from_dataset] == [p.name for p in files]
    for mine, reference in zip(from_dataset, from_files):
        assert mine["labels"] == reference["labels"] and mine["scores"] == reference["scores"]
        assert mine["sample_rate"] == reference["sample_rate"] and mine["duration_s"] == reference["duration_s"]
    keyed = tag(dataset=str(tmp_path / "saved"), id_column="key", model=str(model_dir), num_workers=0, show_progress=False)
    assert [row["id"] for row in keyed.rows] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="--audio-column"):
        tag(dataset=str(tmp_path / "saved"), audio_column="sound", model=str(model_dir), num_workers=0)


def tag_command(inputs, output, model_dir, *extra) -> list[str]:
    return [sys.executable, "-m", "transformers_dass", "tag", *map(str, inputs), "--output", str(output),
            "--model", str(model_dir), "--no-progress", "--dtype", "float32", *extra]  # fmt: skip


def test_a_killed_run_resumes_to_every_input_exactly_once(model_dir, tmp_path, capsys):
    files = write_clips(tmp_path / "many", [(1.0, 16000, 1)] * 60, seed=1)
    output = tmp_path / "tags.jsonl"
    command = tag_command([tmp_path / "many"], output, model_dir, "--shard-size", "2", "--batch-size", "2", "--num-workers", "0")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    parts = tmp_path / "tags.jsonl.parts"
    try:
        deadline = time.monotonic() + 120
        while len(list(parts.glob("rank*.jsonl"))) < 2 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process.poll() is None, f"the run ended before it could be killed: {process.stderr.read().decode()}"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    shards = list(parts.glob("rank*.jsonl"))
    done = [row["id"] for shard in shards for row in read_rows(shard)]
    assert 4 <= len(done) < len(files) and not output.exists()  # killed in the middle, nothing merged yet
    assert cli_main(command[3:]) == 0  # the same command again (in this process: `dass tag ...`)
    assert f"This run tagged {len(files) - len(done)} files" in capsys.readouterr().out
    rows = read_rows(output)
    assert [row["id"] for row in rows] == [str(p) for p in files]  # every input once, in order
    clean = tag(files, model=str(model_dir), num_workers=0, show_progress=False).rows
    for mine, reference in zip(rows, clean):
        assert mine["labels"] == reference["labels"]
        np.testing.assert_allclose(mine["scores"], reference["scores"], atol=SCORE_TOL, rtol=0)


def test_load_audio_reference_is_the_classify_path(clips):
    """The worker's waveform is `dass classify`'s: the same function, so the same samples (guards a refactor)."""
    from transformers_dass.tagging.features import InputFeatures

    extractor = DassFeatureExtractor(max_length=MAX_LENGTH_FRAMES)
    found = discover_inputs([str(clips[5])])
    item = InputFeatures(found, [0], extractor)[0]
    waveform = load_audio(clips[5], 16000)
    expected = extractor(waveform, sampling_rate=16000, return_tensors="pt")["input_values"][0]
    assert torch.equal(item.input_values, expected) and item.duration_s == waveform.shape[0] / 16000


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_tag_in_another_precision_equals_classify_in_it_and_is_not_mixed_into_a_float32_table(
    clips, model_dir, tmp_path, capsys, dtype
):
    files = clips[:3]
    output = tmp_path / "tags.jsonl"
    arguments = ["tag", *map(str, files), "--output", str(output), "--model", str(model_dir), "--top-k", "3"]
    assert cli_main([*arguments, "--num-workers", "0", "--no-progress", "--dtype", dtype]) == 0
    assert f"dass tag: dtype {dtype}" in capsys.readouterr().err
    expected = classify_json(files, model_dir, capsys, dtype=dtype)
    for row, entry in zip(read_rows(output), expected):
        # the same precision path on the same features: the same labels, scores equal but for batch-1 rounding
        assert row["labels"] == [item["label"] for item in entry]
        np.testing.assert_allclose(row["scores"], [item["score"] for item in entry], atol=SCORE_TOL, rtol=0)
    with pytest.raises(ValueError, match="overwrite"):
        tag(files, model=str(model_dir), output=output, top_k=3, num_workers=0, dtype="float32", show_progress=False)
