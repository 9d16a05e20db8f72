"""Every entry point hears the whole recording and gives one answer: pipeline(), the model on extractor output,
`dass classify`, batched or not (issue: no silent 10-second cut)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import pipeline

import transformers_dass.model.modeling_dass as modeling
from transformers_dass import DassFeatureExtractor, DassForAudioClassification
from transformers_dass.audio.io import load_audio
from transformers_dass.cli import main as cli_main
from transformers_dass.inference.loading import demo_model_path

from .conftest import require_fixture

SR = 16000
EVENT_AT_S = 40


@pytest.fixture(scope="module")
def seven_at_40s(tmp_path_factory):
    """60 s of real babble with the example "seven" (said in babble, a held-out voice) added at 40 s, the
    background at half the clip's RMS; (waveform (960000,) float32, path of it as a WAV file)."""
    seven = load_audio("examples/seven_in_babble.wav", sampling_rate=SR)
    babble = np.resize(load_audio(require_fixture("babble_all.wav"), sampling_rate=SR), 60 * SR)
    recording = babble * (0.5 * np.sqrt(np.mean(seven**2)) / np.sqrt(np.mean(babble**2)))
    recording[EVENT_AT_S * SR : EVENT_AT_S * SR + len(seven)] += seven
    path = tmp_path_factory.mktemp("long") / "seven_at_40s.wav"
    sf.write(path, recording, SR, subtype="FLOAT")
    return recording.astype(np.float32), path


def scores_of(model, input_values, **forward_kwargs) -> torch.Tensor:
    """The model's label scores (sigmoid: the demo model is multi-label) of (1, frames, bins) features."""
    with torch.no_grad():
        return model(input_values, **forward_kwargs).logits[0].sigmoid()


def test_pipeline_hears_an_event_at_40_s_as_the_model_and_the_cli_do(seven_at_40s, capsys):
    waveform, path = seven_at_40s
    folder = demo_model_path()
    classifier = pipeline("audio-classification", model=folder)
    seen = []
    hook = classifier.model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["input_values"].shape), with_kwargs=True)
    try:
        predictions = classifier({"raw": waveform, "sampling_rate": SR}, top_k=3)
    finally:
        hook.remove()
    assert seen == [(1, 5998, 128)]  # all 60 s, not the first 1024 frames
    assert predictions[0]["label"] == "seven"

    model = DassForAudioClassification.from_pretrained(folder).eval()
    extractor = DassFeatureExtractor.from_pretrained(folder)
    features = extractor(waveform, sampling_rate=SR, return_tensors="pt")
    whole = scores_of(model, features["input_values"])  # the model's own readout: past 10.24 s, the max
    values, indices = whole.topk(3)
    assert [p["label"] for p in predictions] == [model.config.id2label[i] for i in indices.tolist()]
    np.testing.assert_allclose([p["score"] for p in predictions], values.numpy(), rtol=0, atol=1e-4)
    torch.testing.assert_close(whole, scores_of(model, features["input_values"], clip_pooling="max"), rtol=0, atol=0)

    assert cli_main(["classify", str(path), "--top-k", "3", "--json", "--dtype", "float32"]) == 0
    from_cli = json.loads(capsys.readouterr().out)
    assert [p["label"] for p in from_cli] == [p["label"] for p in predictions]
    assert {p["clip_pooling"] for p in from_cli} == {"max"}
    np.testing.assert_allclose([p["score"] for p in from_cli], [p["score"] for p in predictions], rtol=0, atol=1e-4)

    # What the pipeline did before: the first 10.24 s only, where there is no "seven".
    cut = extractor(waveform, sampling_rate=SR, return_tensors="pt", truncation=True)["input_values"]
    assert model.config.id2label[int(scores_of(model, cut).argmax())] != "seven"


def test_batched_pipeline_equals_one_clip_at_a_time(converted_tiny):
    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32) for seconds in (8, 10, 60, 1200)]
    classifier = pipeline("audio-classification", model=str(converted_tiny))
    one_by_one = [classifier(clip, top_k=10) for clip in clips]
    batched = classifier(clips, batch_size=4, top_k=10)
    assert len(batched) == len(clips)
    for alone, together in zip(one_by_one, batched):
        assert [p["label"] for p in together] == [p["label"] for p in alone]
        np.testing.assert_allclose([p["score"] for p in together], [p["score"] for p in alone], rtol=0, atol=1e-4)


@pytest.mark.parametrize("terminal", [True, False])
def test_hours_take_the_lean_path_with_a_progress_bar_where_a_terminal_is(converted_tiny, monkeypatch, terminal):
    calls = []
    real_lean_forward = modeling.lean_forward

    def recording_lean_forward(model, pixel_values, output_hidden_states, show_progress, pooled_stages=()):
        calls.append(show_progress)
        return real_lean_forward(model, pixel_values, output_hidden_states, False, pooled_stages)

    monkeypatch.setattr(modeling, "lean_forward", recording_lean_forward)
    monkeypatch.setattr(modeling.sys.stderr, "isatty", lambda: terminal)
    classifier = pipeline("audio-classification", model=str(converted_tiny))
    classifier(np.zeros(70 * SR, dtype=np.float32) + 0.01 * np.random.default_rng(0).standard_normal(70 * SR).astype(np.float32))
    assert calls == [terminal]


def test_ragged_masks_give_each_clip_its_own_answer_and_refuse_what_cannot_stack(converted_tiny):
    model = DassForAudioClassification.from_pretrained(converted_tiny).eval()
    extractor = DassFeatureExtractor(max_length=300)
    rng = np.random.default_rng(1)
    clips = [(0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32) for seconds in (1.0, 5.0, 3.3)]
    batch = extractor(clips, sampling_rate=SR, return_tensors="pt")
    labels = torch.tensor([[1.0] + [0.0] * 9] * 3)
    with torch.no_grad():
        together = model(**batch, labels=labels)
        alone = torch.cat([model(**extractor(c, sampling_rate=SR, return_tensors="pt")).logits for c in clips])
        padded_without_mask = model(batch["input_values"]).logits
    torch.testing.assert_close(together.logits, alone, atol=1e-5, rtol=0)
    assert (padded_without_mask - alone).abs().max() > 1e-3  # what the mask is for
    torch.testing.assert_close(together.loss, torch.nn.functional.binary_cross_entropy_with_logits(alone, labels))
    with pytest.raises(ValueError, match="cannot be stacked"):
        model(**batch, return_frame_logits=True)
    with pytest.raises(ValueError, match="1s, then 0s"):
        model(batch["input_values"], attention_mask=batch["attention_mask"].flip(1))
    with pytest.raises(ValueError, match="DassModel cannot stack"):
        model.dass(batch["input_values"], attention_mask=batch["attention_mask"])
