"""What transformers' own tools expect of a model, checked offline: the loss chosen as transformers infers it, new
label sets, `from_pretrained` without a folder, `freeze_feature_encoder`, gradients of returned hidden states, the
Hub layout read through the conversion mapping and saved natively, and the `auto_map` of saved folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForAudioClassification

from transformers_dass import (
    DassConfig,
    DassFeatureExtractor,
    DassForAudioClassification,
)
from transformers_dass.model.auto_module import (
    AUTO_MAP,
    AUTO_MODULE_FILE,
    AUTO_MODULE_SOURCE,
)

from .conftest import require_fixture

TOL = 1e-4  # parity with the authors' code, as in test_modeling.py


def tiny_config(**kwargs) -> DassConfig:
    defaults = dict(dims=[8, 16, 24, 32], depths=[1, 1, 1, 1], num_labels=4, drop_path_rate=0.0, num_mel_bins=24)
    return DassConfig(**{**defaults, **kwargs})


def test_unset_problem_type_is_inferred_from_the_labels_and_kept():
    x = torch.randn(3, 30, 24)
    classes = torch.tensor([2, 0, 1])
    single = DassForAudioClassification(tiny_config())
    assert single.config.problem_type is None
    out = single(x, labels=classes)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, classes))
    assert single.config.problem_type == "single_label_classification"

    multi = DassForAudioClassification(tiny_config())
    hot = F.one_hot(classes, 4).float()
    out = multi(x, labels=hot)
    torch.testing.assert_close(out.loss, F.binary_cross_entropy_with_logits(out.logits, hot))
    assert multi.config.problem_type == "multi_label_classification"


def test_an_explicit_multi_label_problem_type_is_kept():
    model = DassForAudioClassification(tiny_config(problem_type="multi_label_classification"))
    with pytest.raises(ValueError, match="single_label_classification"):
        model(torch.randn(3, 30, 24), labels=torch.tensor([2, 0, 1]))


def test_converted_audioset_checkpoints_say_multi_label(converted_tiny):
    assert json.loads((converted_tiny / "config.json").read_text())["problem_type"] == "multi_label_classification"
    assert AutoConfig.from_pretrained(require_fixture("hub_tiny")).problem_type == "multi_label_classification"


@pytest.fixture()
def labelled_folder(tmp_path):
    """A saved config with four named labels, their AudioSet mids and a multi-label head."""
    names = ["Speech", "Dog", "Siren", "Music"]
    config = tiny_config(id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
                         label_mids=["/m/09x0r", "/m/0bt9lr", "/m/03kmc9", "/m/04rlf"],
                         problem_type="multi_label_classification")
    config.save_pretrained(tmp_path)
    return tmp_path


def test_a_new_label_set_drops_label_mids_and_the_old_problem_type(labelled_folder):
    words = ["yes", "no"]
    config = AutoConfig.from_pretrained(labelled_folder, num_labels=2, id2label=dict(enumerate(words)),
                                        label2id={w: i for i, w in enumerate(words)})
    assert config.num_labels == 2 and config.label_mids is None and config.problem_type is None
    kept = AutoConfig.from_pretrained(labelled_folder, num_labels=2, problem_type="multi_label_classification")
    assert kept.problem_type == "multi_label_classification" and kept.label_mids is None
    same = AutoConfig.from_pretrained(labelled_folder)
    assert same.problem_type == "multi_label_classification" and same.label_mids[1] == "/m/0bt9lr"


def test_label_mids_follow_a_relabelling_by_name(labelled_folder):
    config = AutoConfig.from_pretrained(labelled_folder)
    config.id2label = {0: "Siren", 1: "Speech"}
    assert config.label_mids == ["/m/03kmc9", "/m/09x0r"]
    config.num_labels = 3
    assert config.label_mids is None
    with pytest.raises(ValueError, match="label_mids"):
        tiny_config(num_labels=3, label_mids=["/m/a", "/m/b"])


def test_from_pretrained_without_a_folder_takes_config_and_state_dict():
    source = DassForAudioClassification(tiny_config()).eval()
    loaded = DassForAudioClassification.from_pretrained(None, config=source.config, state_dict=source.state_dict()).eval()
    x = torch.randn(2, 30, 24)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, source(x).logits, atol=0, rtol=0)


def test_freeze_feature_encoder_freezes_the_patch_embedding_only():
    model = DassForAudioClassification(tiny_config())
    model.freeze_feature_encoder()
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {name for name, _ in model.named_parameters() if name.startswith("dass.embeddings.")}
    model(torch.randn(2, 30, 24), labels=torch.tensor([1, 3])).loss.backward()
    assert model.dass.embeddings.conv1.weight.grad is None and model.dass.stages[0].blocks[0].mixer.D.grad is not None


def test_every_returned_hidden_state_gets_a_gradient():
    """Grad-CAM on a stage: `.grad` of a returned map after `retain_grad()` is the output's gradient there."""
    model = DassForAudioClassification(tiny_config()).train()
    out = model(torch.randn(2, 30, 24), output_hidden_states=True)
    for state in out.hidden_states:
        state.retain_grad()
    out.logits[:, 1].sum().backward()
    for i, state in enumerate(out.hidden_states):
        assert state.grad is not None and state.grad.abs().sum() > 0, f"hidden state {i}"
    # The gradient of the last stage's map, through the final LayerNorm, mean pooling and the head, by autograd on
    # a copy of that map fed to those layers alone: an independent path to the same number.
    last = out.hidden_states[-1].detach().requires_grad_(True)
    logits = model.classifier(model.dass.layernorm(last.permute(0, 2, 3, 1)).mean(dim=(1, 2)))
    logits[:, 1].sum().backward()
    torch.testing.assert_close(out.hidden_states[-1].grad, last.grad, atol=1e-6, rtol=1e-5)


def test_hub_layout_loads_through_the_conversion_mapping_and_saves_natively(tmp_path, original_tiny):
    model = AutoModelForAudioClassification.from_pretrained(require_fixture("hub_tiny")).eval()
    model.save_pretrained(tmp_path)
    keys = set(load_file(str(tmp_path / "model.safetensors")))
    assert keys == set(model.state_dict())  # native names: dass.embeddings.conv1.weight, ..., classifier.weight
    reloaded = AutoModelForAudioClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        logits = reloaded(original_tiny["input.T200"]).logits
    torch.testing.assert_close(logits, original_tiny["logits.T200"], atol=TOL, rtol=0)


def test_saved_folders_name_their_auto_classes(tmp_path):
    DassForAudioClassification(tiny_config()).save_pretrained(tmp_path)
    DassFeatureExtractor(num_mel_bins=24).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["auto_map"] == AUTO_MAP
    preprocessor = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert preprocessor["auto_map"] == {"AutoFeatureExtractor": AUTO_MAP["AutoFeatureExtractor"]}
    assert sorted(p.name for p in tmp_path.glob("*.py")) == [AUTO_MODULE_FILE]


LOAD_WITHOUT_IMPORT = textwrap.dedent("""
    import sys
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification
    folder = sys.argv[1]
    extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForAudioClassification.from_pretrained(folder, trust_remote_code=True)
    print(type(extractor).__module__, type(config).__module__, type(model).__module__)
""")


def run_python(code: str, folder, tmp_path, prelude: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", prelude + code, str(folder)], capture_output=True, text=True,
                          env=env, timeout=120)


def test_a_saved_folder_loads_in_a_program_that_never_imports_the_package(tmp_path):
    folder = tmp_path / "model"
    DassForAudioClassification(tiny_config()).save_pretrained(folder)
    DassFeatureExtractor(num_mel_bins=24).save_pretrained(folder)
    done = run_python(LOAD_WITHOUT_IMPORT, folder, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # The installed package's classes, not copies of them: the folder holds no model code.
    assert done.stdout.split() == ["transformers_dass.model.feature_extraction_dass", "transformers_dass.model.configuration_dass",
                                   "transformers_dass.model.modeling_dass"]
    missing = run_python(LOAD_WITHOUT_IMPORT, folder, tmp_path, prelude="import sys; sys.modules['transformers_dass'] = None\n")
    assert missing.returncode != 0 and "pip install transformers-dass" in missing.stderr


def test_the_bundled_demo_model_carries_the_same_entry_points():
    from transformers_dass.inference.loading import demo_model_path

    demo = Path(demo_model_path())
    assert (demo / AUTO_MODULE_FILE).read_text() == AUTO_MODULE_SOURCE  # the demo's copy cannot drift
    assert json.loads((demo / "config.json").read_text())["auto_map"] == AUTO_MAP
