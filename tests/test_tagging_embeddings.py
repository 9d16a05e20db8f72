"""`dass tag --embeddings`: each row's `embedding` is `DassModel(...).pooler_output` of that file, computed here on
its own; the column round-trips through Parquet, CSV and JSONL; resume and refusal cover the option."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.test_tagging import MAX_LENGTH_FRAMES, clips, model_dir, write_bad_inputs  # noqa: F401 - fixtures
from tests.tolerances import gamma
from transformers_dass import DassFeatureExtractor, DassModel
from transformers_dass.audio.io import load_audio
from transformers_dass.cli import main as cli_main
from transformers_dass.tagging import RunOptionsError, read_rows, tag

# The embedding is a mean of LayerNorm outputs (weight 1, bias 0 in the tiny model: values of order 1). Batched
# with other clips vs alone, the same float32 operations run with GEMM rows blocked differently and sums taken in
# another order. Along the tiny model's path an output value passes fewer than 1000 roundings (3x3 convolutions
# over <= 32 channels, projections of <= 128 terms, LayerNorm means, scans over <= 40 steps, the final mean), and
# the LayerNorms re-scale the error rather than grow it: Higham's gamma_1000 = 6e-5 of magnitude 1. A real fault
# (another clip's row, padding mixed in, another layer's output, bf16 where float32 was asked) moves the values
# by 1e-3 and more (the first test checks that the clips' embeddings differ by far more than this).
EMBEDDING_TOL = gamma(1000)


def reference_embedding(path, model_dir) -> np.ndarray:  # noqa: F811
    """The pooled last hidden state of `path`, independently: decode at 16 kHz, the extractor's defaults, the base
    model loaded from the folder on its own, one clip per forward."""
    extractor = DassFeatureExtractor(max_length=MAX_LENGTH_FRAMES)
    features = extractor(load_audio(path, 16000), sampling_rate=16000, return_tensors="pt")["input_values"]
    model = DassModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        return model(features).pooler_output[0].numpy()


def test_embeddings_equal_the_base_models_pooler_output(clips, model_dir):  # noqa: F811
    options = dict(model=str(model_dir), top_k=3, num_workers=0, batch_size=2, show_progress=False)
    rows = tag(clips, embeddings=True, **options).rows
    plain = tag(clips, **options).rows
    references = [reference_embedding(path, model_dir) for path in clips]
    for row, reference, path in zip(rows, references, clips):
        assert len(row["embedding"]) == reference.shape[0] == 32, path  # config.hidden_size of the tiny model
        np.testing.assert_allclose(row["embedding"], reference, atol=EMBEDDING_TOL, rtol=0, err_msg=str(path))
        assert {k: v for k, v in row.items() if k != "embedding"} == next(p for p in plain if p["id"] == row["id"])
    assert "embedding" not in plain[0]
    spread = min(np.abs(a - b).max() for i, a in enumerate(references) for b in references[i + 1 :])
    assert spread > 100 * EMBEDDING_TOL  # the clips' embeddings differ: a row swapped for another would fail


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_embedding_column_round_trips_in_every_format(clips, model_dir, tmp_path, suffix):  # noqa: F811
    output = tmp_path / f"tags{suffix}"
    options = dict(model=str(model_dir), embeddings=True, num_workers=0, show_progress=False)
    tag(clips[:3], output=output, segments=True, **options)
    in_memory = tag(clips[:3], segments=True, **options).rows
    assert read_rows(output) == in_memory  # float32 values: exact in Parquet's float32 and in JSON's digits
    if suffix == ".parquet":
        import pyarrow.parquet

        assert str(pyarrow.parquet.read_schema(output).field("embedding").type) == "list<element: float>"


def test_embeddings_in_resume_refusal_and_error_rows(clips, model_dir, tmp_path):  # noqa: F811
    output = tmp_path / "tags.jsonl"
    options = dict(model=str(model_dir), output=output, num_workers=0, show_progress=False)
    tag(clips[:2], **options)
    with pytest.raises(RunOptionsError, match="embeddings: None there, True now"):
        tag(clips[:2], embeddings=True, **options)
    tag(clips[:2], embeddings=True, overwrite=True, **options)
    resumed = tag(clips[:3], embeddings=True, **options)
    assert resumed.tagged_now == 1 and all(len(row["embedding"]) == 32 for row in read_rows(output))
    with pytest.raises(RunOptionsError, match="embeddings: True there, None now"):
        tag(clips[:3], **options)

    bad = write_bad_inputs(tmp_path / "bad")
    table = tmp_path / "bad.parquet"
    command = ["tag", str(bad["good"]), str(bad["corrupted"]), "--model", str(model_dir), "--output", str(table),
               "--embeddings", "--dtype", "float32", "--num-workers", "0", "--no-progress"]  # fmt: skip
    assert cli_main(command) == 2
    good, corrupted = read_rows(table)
    np.testing.assert_allclose(good["embedding"], reference_embedding(bad["good"], model_dir), atol=EMBEDDING_TOL)
    assert corrupted["error"] and corrupted["embedding"] is None


@pytest.mark.parametrize("inference_mode", ["standard", "lean"])
def test_read_out_clip_and_step_embeddings_come_from_the_same_forward_on_both_paths(model_dir, inference_mode):  # noqa: F811
    from transformers_dass import DassForAudioClassification
    from transformers_dass.model.readout import read_out

    model = DassForAudioClassification.from_pretrained(model_dir).eval()
    features = torch.randn(2, 300, 128, generator=torch.Generator().manual_seed(0))
    readouts = read_out(model, features, ["mean"], embeddings=True, step_embeddings=True, inference_mode=inference_mode)
    with torch.no_grad():
        outputs = model.dass(features, inference_mode="standard")
    assert readouts.embeddings.dtype == torch.float32 and readouts.embeddings.shape == (2, 32)
    torch.testing.assert_close(readouts.embeddings, outputs.pooler_output, atol=EMBEDDING_TOL, rtol=0)
    # the per-step embeddings, what the frame logits are read from: the last hidden state's frequency mean
    steps = outputs.last_hidden_state.mean(dim=2).transpose(1, 2)
    assert readouts.step_embeddings.shape == (2, 10, 32) and readouts.step_embeddings.dtype == torch.float32
    torch.testing.assert_close(readouts.step_embeddings, steps, atol=EMBEDDING_TOL, rtol=0)
    # the classifier's input: its logits are the mean readout (the same float32 linear map of the same tensor; only
    # the GEMM's blocking may differ: 32-term sums, within 32 * 2^-24 = 2e-6 of their size)
    logits = model.classifier(readouts.embeddings)  # a plain tensor: usable with autograd on, as a probe would
    torch.testing.assert_close(logits, readouts.clip_logits["mean"], atol=1e-5, rtol=1e-5)
    assert read_out(model, features, ["mean"]).embeddings is None
