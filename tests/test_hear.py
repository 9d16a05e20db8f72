"""`transformers_dass.hear`: the HEAR 2021 API contract (the checks `hear-validator` makes: attributes, shapes,
dtypes, timestamps, batch independence, determinism) and the embeddings against `DassModel` computed here on its
own: the scene embedding is `pooler_output`, the timestamp embeddings its per-step states interpolated to 40 ms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.tolerances import gamma
from transformers_dass import DassModel, hear
from transformers_dass.inference.loading import demo_model_path

# Batched vs alone, and this module vs the base model run here: the same float32 operations with GEMMs blocked
# differently. The demo model's path has fewer than 4000 roundings per value (3x3 convolutions over <= 256
# channels, projections of <= 1024 terms, scans over <= 40 steps, LayerNorms, the means), on values of order 1
# after the final LayerNorm; a wrong clip, padding or layer moves them by 1e-2 and more.
TOL = gamma(4000)


@pytest.fixture(scope="module")
def model():
    return hear.load_model()


def sounds(lengths_s, seed=0) -> torch.Tensor:
    """(n, samples) float32 in [-1, 1]: a tone that starts halfway, in noise (so that steps differ in time)."""
    rng = np.random.default_rng(seed)
    clips = []
    for seconds in lengths_s:
        t = np.arange(int(seconds * 16000)) / 16000
        tone = 0.5 * np.sin(2 * np.pi * rng.uniform(300, 3000) * t) * (t > seconds / 2)
        clips.append(np.clip(tone + 0.1 * rng.standard_normal(t.shape), -1, 1))
    return torch.tensor(np.stack(clips), dtype=torch.float32)


def test_attributes(model):
    assert isinstance(model, torch.nn.Module)
    assert model.sample_rate == 16000
    assert isinstance(model.scene_embedding_size, int) and model.scene_embedding_size == model.dass.config.hidden_size
    assert model.timestamp_embedding_size == model.scene_embedding_size


@pytest.mark.parametrize("seconds", [0.5, 2.0, 11.0])  # shorter than 10.24 s (padded) and longer
def test_shapes_dtypes_and_timestamps(model, seconds):
    audio = sounds([seconds] * 3)
    scenes = hear.get_scene_embeddings(audio, model)
    assert scenes.shape == (3, model.scene_embedding_size) and scenes.dtype == torch.float32
    embeddings, times = hear.get_timestamp_embeddings(audio, model)
    frames = 1 + (int(seconds * 16000) - 400) // 160  # Kaldi frames: 25 ms windows every 10 ms, whole ones only
    steps = -(-frames // 4)  # 40 ms steps holding audio
    assert embeddings.shape == (3, steps, model.timestamp_embedding_size) and embeddings.dtype == torch.float32
    assert times.shape == (3, steps) and times.dtype == torch.float32
    np.testing.assert_array_equal(times[1].numpy(), 40.0 * np.arange(steps) + 20.0)
    assert torch.equal(times[0], times[2]) and bool(torch.all(torch.diff(times, dim=1) <= 50.0))
    assert torch.isfinite(embeddings).all() and torch.isfinite(scenes).all()
    probe = torch.nn.Linear(model.scene_embedding_size, 2)
    probe(scenes).sum().backward()  # plain tensors (not inference tensors): a probe trains on them
    assert probe.weight.grad is not None


def test_batch_independence_and_determinism(model):
    audio = sounds([2.0] * 3, seed=1)
    together = hear.get_timestamp_embeddings(audio, model)[0]
    alone = hear.get_timestamp_embeddings(audio[1:2], model)[0]
    torch.testing.assert_close(alone[0], together[1], atol=TOL, rtol=0)
    assert torch.equal(hear.get_scene_embeddings(audio, model), hear.get_scene_embeddings(audio, model))
    assert (together[0] - together[2]).abs().max() > 100 * TOL  # different sounds, different embeddings


def test_embeddings_equal_the_base_model_computed_independently(model):
    from transformers_dass import DassFeatureExtractor

    seconds = 3.0
    audio = sounds([seconds, seconds], seed=2)
    extractor = DassFeatureExtractor.from_pretrained(demo_model_path())
    features = extractor(list(audio.numpy()), sampling_rate=16000, return_tensors="pt")["input_values"]
    base = DassModel.from_pretrained(demo_model_path()).eval()
    with torch.no_grad():
        output = base(features)
    torch.testing.assert_close(hear.get_scene_embeddings(audio, model), output.pooler_output, atol=TOL, rtol=0)
    # per 0.32 s step: the last hidden state averaged over frequency, centred at (j + 1/2) 320 ms; linear
    # interpolation at the 40 ms centres, held constant before the first and after the last centre (np.interp)
    coarse = output.last_hidden_state.mean(dim=2).numpy()  # (n, C, steps)
    embeddings, times = hear.get_timestamp_embeddings(audio, model)
    centres = (np.arange(coarse.shape[2]) + 0.5) * 320.0
    for b in range(2):
        expected = np.stack([np.interp(times[b].numpy(), centres, channel) for channel in coarse[b]], axis=1)
        np.testing.assert_allclose(embeddings[b].numpy(), expected, atol=TOL, rtol=0)
    assert embeddings.shape[1] == 75  # 3 s: 298 Kaldi frames, 75 steps of 40 ms


def test_bad_audio_names_the_shape(model):
    with pytest.raises(ValueError, match=r"\(n_sounds, samples\)"):
        hear.get_scene_embeddings(torch.zeros(16000), model)
