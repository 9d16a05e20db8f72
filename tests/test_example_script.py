"""transformers' own `examples/pytorch/audio-classification/run_audio_classification.py`, unmodified, fine-tunes the
bundled demo model to a new set of integer labels on CPU, as its README runs it, plus `--trust_remote_code True`
(the DASS folder's `auto_map`: the script never imports transformers_dass).

The script comes from transformers' sources at test time (tests/transformers_sources.py), never from this
repository; datasets' audio decoding goes through tests/example_runner.py where torchcodec does not load.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from transformers_dass.inference.loading import demo_model_path
from transformers_dass.model.auto_module import AUTO_MODULE_SOURCE

from .keyword_dataset import make_keyword_dataset
from .transformers_sources import example_script

SCRIPT = "pytorch/audio-classification/run_audio_classification.py"
WORDS = ("yes", "no", "up", "down")
RUNNER = Path(__file__).resolve().parent / "example_runner.py"

# evaluate.load("accuracy") reads a folder of that name in the working directory before it asks the Hub, which is
# out of reach here: this is that module, the fraction of predictions equal to the references.
ACCURACY_MODULE = '''import datasets
import evaluate
import numpy as np


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="fraction of predictions equal to the references", citation="", inputs_description="",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        return {"accuracy": float(np.mean(np.asarray(predictions) == np.asarray(references)))}
'''


def example_command(script: Path, model: Path, data: Path, output: Path, max_steps: int) -> list[str]:
    """The command of docs/training.md: the script's own flags, its default `--freeze_feature_encoder`."""
    return [
        sys.executable, str(RUNNER), str(script),
        "--model_name_or_path", str(model), "--dataset_name", str(data), "--output_dir", str(output),
        "--trust_remote_code", "True", "--remove_unused_columns", "False", "--ignore_mismatched_sizes", "True",
        "--do_train", "--do_eval", "--max_steps", str(max_steps), "--learning_rate", "3e-3",
        "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "8", "--max_length_seconds", "1",
        "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none", "--use_cpu", "--seed", "0",
    ]  # fmt: skip


@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                    reason="espeak-ng and sox make the keyword clips (apt-get install espeak-ng sox)")
def test_example_script_fine_tunes_the_demo_model_to_new_labels(tmp_path):
    script = example_script(SCRIPT)
    data = make_keyword_dataset(tmp_path / "keywords", WORDS, train_per_word=4, eval_per_word=2)
    model = tmp_path / "demo"
    shutil.copytree(demo_model_path(), model)  # the run must not write into the installed package
    (tmp_path / "accuracy").mkdir()
    (tmp_path / "accuracy" / "accuracy.py").write_text(ACCURACY_MODULE)
    output = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"),
           "HF_DATASETS_CACHE": str(tmp_path / "datasets"), "HF_EVALUATE_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(example_command(script, model, data, output, max_steps=3), cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    config = json.loads((output / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(len(WORDS))] == list(WORDS)
    assert config["problem_type"] == "single_label_classification"  # inferred from the integer labels
    assert "label_mids" not in config or config["label_mids"] is None  # the demo's mids belong to its 16 labels
    assert config["auto_map"]["AutoModelForAudioClassification"] == "dass_auto.DassForAudioClassification"
    assert (output / "dass_auto.py").read_text() == AUTO_MODULE_SOURCE  # entry points only, no model code
    assert sorted(p.name for p in output.glob("*.py")) == ["dass_auto.py"]

    before, after = load_file(str(model / "model.safetensors")), load_file(str(output / "model.safetensors"))
    assert after["classifier.weight"].shape == (len(WORDS), before["classifier.weight"].shape[1])
    frozen = [k for k in before if k.startswith("dass.embeddings.")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # --freeze_feature_encoder (default)
    trained = [k for k in before if k.startswith("dass.stages.")]
    assert any(not torch.equal(before[k], after[k]) for k in trained)

    results = json.loads((output / "all_results.json").read_text())
    assert torch.isfinite(torch.tensor(results["train_loss"]))
    assert 0.0 <= results["eval_accuracy"] <= 1.0
