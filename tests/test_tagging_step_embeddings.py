"""`dass tag --segments --step-embeddings STEPS.parquet`: one row per 0.32 s step that holds audio, whose embedding
is `DassModel(...).last_hidden_state` averaged over frequency at that step, computed here on its own (also on the
block-read, lean path of long files); keyed by id and step; resume, a lost table shard, and the refusals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from tests.test_tagging import MAX_LENGTH_FRAMES, clips, model_dir, write_bad_inputs  # noqa: F401 - fixtures
from tests.test_tagging_embeddings import EMBEDDING_TOL
from transformers_dass import (
    DassFeatureExtractor,
    DassModel,
)
from transformers_dass.audio.io import load_audio
from transformers_dass.cli import main as cli_main
from transformers_dass.inference.features import long_audio_features
from transformers_dass.model import modeling_dass
from transformers_dass.tagging import RunOptionsError, read_rows, tag

FRAMES_PER_STEP = 32  # input frames per step of the last stage (10 ms each: 0.32 s)
BLOCK_SECONDS = 1.5  # files longer than this are read in blocks in the lean runs below
# Tolerance: EMBEDDING_TOL (tests/test_tagging_embeddings.py), gamma_1000 of values of order 1. A step embedding is
# the mean of 4 LayerNorm outputs (the frequency positions of the tiny model's last map): 2 more roundings than the
# path to them, far inside the bound; batched or lean vs alone and standard changes only the order of sums.


def reference_steps(path, model_dir, blocks: bool = False) -> np.ndarray:  # noqa: F811
    """(steps holding audio, hidden_size): the last hidden state averaged over frequency, independently: the base
    model loaded on its own, one clip per forward on the standard path; the features of `dass classify` (files
    longer than BLOCK_SECONDS read in blocks when `blocks`, as tag() reads them then)."""
    extractor = DassFeatureExtractor(max_length=MAX_LENGTH_FRAMES)
    waveform = load_audio(path, 16000)
    if blocks and waveform.shape[0] / 16000 > BLOCK_SECONDS:
        features = long_audio_features(path, extractor, show_progress=False).unsqueeze(0)
    else:
        features = extractor(waveform, sampling_rate=16000, return_tensors="pt")["input_values"]
    model = DassModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        hidden = model(features, inference_mode="standard").last_hidden_state[0]  # (C, F', T')
    audio_frames = 1 + (waveform.shape[0] - 400) // 160  # 25 ms windows every 10 ms
    steps = -(-audio_frames // FRAMES_PER_STEP)
    return hidden.mean(dim=1).T[:steps].numpy(), audio_frames


def steps_by_id(path) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for row in pq.read_table(path).to_pylist():
        found.setdefault(row["id"], []).append(row)
    return found


@pytest.fixture(scope="module")
def lean_model_dir(model_dir, tmp_path_factory):  # noqa: F811
    """The tiny model with the lean path from 150 frames (1.5 s): the clips of 1.7 s and more take it."""
    folder = tmp_path_factory.mktemp("lean_model")
    shutil.copytree(model_dir, folder, dirs_exist_ok=True)
    config = json.loads((folder / "config.json").read_text())
    config["lean_threshold_frames"] = 150
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("lean", [False, True])
def test_step_rows_are_the_models_per_step_hidden_means(clips, model_dir, lean_model_dir, tmp_path, monkeypatch, lean):  # noqa: F811
    folder = lean_model_dir if lean else model_dir
    calls = []
    original = modeling_dass.lean_forward
    monkeypatch.setattr(modeling_dass, "lean_forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    output, steps = tmp_path / "tags.jsonl", tmp_path / "steps.parquet"
    summary = tag(
        clips, model=str(folder), output=output, segments=True, step_embeddings=steps, batch_size=2, num_workers=0,
        show_progress=False, long_file_seconds=BLOCK_SECONDS if lean else 600.0,
    )  # fmt: skip
    assert summary.step_embeddings == str(steps) and summary.failed == 0
    assert (len(calls) > 0) == lean  # the long clips went through the lean forward in the lean run only
    found = steps_by_id(steps)
    assert set(found) == {row["id"] for row in read_rows(output)}
    assert str(pq.read_schema(steps).field("embedding").type) == "list<element: float>"
    for path in clips:
        rows = found[str(path)]
        reference, audio_frames = reference_steps(path, model_dir, blocks=lean)
        assert len(rows) == reference.shape[0] == -(-audio_frames // FRAMES_PER_STEP), path  # every step, once
        assert [row["step"] for row in rows] == list(range(len(rows)))
        starts = [row["start_s"] for row in rows]
        ends = [row["end_s"] for row in rows]
        np.testing.assert_allclose(starts, 0.32 * np.arange(len(rows)), rtol=0, atol=1e-12)
        np.testing.assert_allclose(ends[:-1], starts[1:], rtol=0, atol=1e-12)
        assert ends[-1] == pytest.approx(audio_frames * 0.01, abs=1e-12)  # the last step ends with the audio
        vectors = np.array([row["embedding"] for row in rows])
        np.testing.assert_allclose(vectors, reference, atol=EMBEDDING_TOL, rtol=0, err_msg=str(path))
    # the steps differ from each other by far more than the tolerance: a shifted or swapped step would fail
    first = np.array([row["embedding"] for row in found[str(clips[3])]])
    assert np.abs(np.diff(first, axis=0)).max(axis=1).min() > 100 * EMBEDDING_TOL


def test_in_memory_rows_equal_the_file_and_the_clip_embedding_is_their_mean(clips, model_dir, tmp_path):  # noqa: F811
    options = dict(model=str(model_dir), segments=True, batch_size=1, num_workers=0, show_progress=False)
    summary = tag(clips[:4], step_embeddings=True, embeddings=True, **options)
    tag(clips[:4], output=tmp_path / "t.parquet", step_embeddings=tmp_path / "s.parquet", **options)
    written = pq.read_table(tmp_path / "s.parquet").to_pylist()
    assert sorted(summary.step_rows, key=lambda r: (r["id"], r["step"])) == sorted(
        written, key=lambda r: (r["id"], r["step"])
    )  # batch_size 1 both times: the same forwards, the same float32 values
    assert [row["id"] for row in summary.step_rows] == sorted(
        (row["id"] for row in summary.step_rows), key=[str(p) for p in clips].index
    )  # input order
    # clip 3 (2 s) is longer than the training length: no padding, so its steps' mean is the clip embedding
    # (the pooler's mean over frequency and time of the same values; 7 more terms summed: well inside the tolerance)
    row = next(r for r in summary.rows if r["id"] == str(clips[3]))
    vectors = np.array([r["embedding"] for r in summary.step_rows if r["id"] == str(clips[3])])
    np.testing.assert_allclose(vectors.mean(axis=0), row["embedding"], atol=EMBEDDING_TOL, rtol=0)


def test_resume_refusals_and_a_lost_table_shard(clips, model_dir, tmp_path):  # noqa: F811
    output, steps = tmp_path / "tags.parquet", tmp_path / "steps.parquet"
    options = dict(model=str(model_dir), output=output, segments=True, num_workers=0, show_progress=False)
    tag(clips[:2], step_embeddings=steps, shard_size=1, **options)
    resumed = tag(clips[:4], step_embeddings=steps, shard_size=1, **options)
    assert resumed.tagged_now == 2
    assert set(steps_by_id(steps)) == {str(p) for p in clips[:4]}

    # a kill after an input's step shard but before its table shard: the rerun tags it again, and the merged file
    # holds its steps once (the newest shard's), not twice
    last_table_shard = max((output.parent / "tags.parquet.parts").glob("rank*.parquet"), key=lambda p: p.name)
    last_table_shard.unlink()
    again = tag(clips[:4], step_embeddings=steps, shard_size=1, **options)
    assert again.tagged_now == 1
    merged = steps_by_id(steps)
    assert set(merged) == {str(p) for p in clips[:4]}
    for path in clips[:4]:
        reference, _ = reference_steps(path, model_dir)
        assert [row["step"] for row in merged[str(path)]] == list(range(reference.shape[0]))

    with pytest.raises(RunOptionsError, match=r"step_embeddings: '.*steps.parquet' there, None now"):
        tag(clips[:4], **options)
    with pytest.raises(RunOptionsError, match=r"step_embeddings: '.*steps.parquet' there, '.*other.parquet' now"):
        tag(clips[:4], step_embeddings=tmp_path / "other.parquet", **options)
    fresh = tmp_path / "fresh.parquet"
    with pytest.raises(RunOptionsError, match="no run in .* wrote it"):  # an existing file is not clobbered
        tag(clips[:1], model=str(model_dir), output=fresh, segments=True, step_embeddings=steps, num_workers=0)
    plain = dict(model=str(model_dir), output=tmp_path / "plain.parquet", segments=True, num_workers=0)
    tag(clips[:1], **plain)
    with pytest.raises(RunOptionsError, match="step_embeddings: None there"):  # a run without them isn't extended
        tag(clips[:1], step_embeddings=tmp_path / "late.parquet", **plain)


def test_refusals_name_the_fix(clips, model_dir, tmp_path):  # noqa: F811
    options = dict(model=str(model_dir), num_workers=0, show_progress=False)
    with pytest.raises(ValueError, match="pass --segments too"):
        tag(clips[:1], output=tmp_path / "t.parquet", step_embeddings=tmp_path / "s.parquet", **options)
    with pytest.raises(ValueError, match="Parquet only.*name it e.g. s.parquet"):
        tag(clips[:1], output=tmp_path / "t.parquet", segments=True, step_embeddings=tmp_path / "s.csv", **options)
    with pytest.raises(ValueError, match="is the table itself"):
        tag(clips[:1], output=tmp_path / "t.parquet", segments=True, step_embeddings=tmp_path / "t.parquet", **options)
    with pytest.raises(ValueError, match="needs an output table"):
        tag(clips[:1], segments=True, step_embeddings=tmp_path / "s.parquet", **options)
    with pytest.raises(ValueError, match="names their .parquet file"):
        tag(clips[:1], output=tmp_path / "t.parquet", segments=True, step_embeddings=True, **options)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_cli_writes_steps_and_leaves_error_rows_without_any(model_dir, tmp_path, capsys):  # noqa: F811
    bad = write_bad_inputs(tmp_path / "bad")
    table, steps = tmp_path / "tags.csv", tmp_path / "steps.parquet"
    command = ["tag", str(bad["good"]), str(bad["corrupted"]), "--model", str(model_dir), "--output", str(table),
               "--segments", "--step-embeddings", str(steps), "--dtype", "float32", "--num-workers", "0",
               "--no-progress"]  # fmt: skip
    assert cli_main(command) == 2  # the corrupted file's row holds its error (float32: --dtype auto may be bf16)
    assert f"per-step embeddings -> {steps}" in capsys.readouterr().out
    found = steps_by_id(steps)
    assert set(found) == {str(bad["good"])}
    reference, _ = reference_steps(bad["good"], model_dir)
    np.testing.assert_allclose([r["embedding"] for r in found[str(bad["good"])]], reference, atol=EMBEDDING_TOL)
    assert cli_main(["tag", str(bad["good"]), "--output", str(tmp_path / "x.csv"), "--step-embeddings",
                     str(steps), "--model", str(model_dir)]) == 2  # fmt: skip
    assert "pass --segments too" in capsys.readouterr().err


def test_step_shards_flush_by_size_and_merge_keeps_the_newest_of_each_id(tmp_path):
    from transformers_dass.inference.classify import StepEmbeddings
    from transformers_dass.tagging.step_table import StepShardWriter, merge_steps

    def steps(count: int, value: float) -> StepEmbeddings:
        times = np.stack([np.arange(count) * 0.32, np.arange(1, count + 1) * 0.32], axis=1)
        return StepEmbeddings(times, torch.full((count, 3), value))

    writer = StepShardWriter(tmp_path, rank=0, max_values=12)  # 4 steps of 3 values
    writer.add([("a", steps(2, 1.0))])
    assert not list(tmp_path.glob("steps-*"))  # 6 values: still buffered
    writer.add([("b", steps(3, 2.0))])
    assert len(list(tmp_path.glob("steps-*"))) == 1  # 15 values: written without waiting for the table
    writer.add([("a", steps(2, 3.0)), ("c", steps(1, 4.0))])  # "a" tagged again (a kill, --retry-failed)
    writer.flush()
    assert merge_steps(tmp_path, tmp_path / "steps.parquet", keep={"a", "b"}) == 5  # "c" has no row in the table
    rows = pq.read_table(tmp_path / "steps.parquet").to_pylist()
    assert [(r["id"], r["step"], r["embedding"][0]) for r in rows] == [("b", 0, 2.0), ("b", 1, 2.0), ("b", 2, 2.0),
                                                                       ("a", 0, 3.0), ("a", 1, 3.0)]  # fmt: skip
    assert StepShardWriter(tmp_path, rank=0)._next == 3  # a resumed process numbers its shards after these
