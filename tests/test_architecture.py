"""The package's shape: the import-linter contracts (layers, no circles) hold, and can fail; every front end reads a
file once and runs the model once."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
EXAMPLES = ROOT / "examples"


def lint_imports(src: Path) -> subprocess.CompletedProcess:
    """`lint-imports` with the repository's contracts (.importlinter) over the package found under `src`."""
    pytest.importorskip("importlinter", reason='the contract tests need import-linter: pip install -e ".[dev]"')
    program = Path(sys.executable).parent / "lint-imports"
    env = {"PYTHONPATH": str(src), "PATH": str(Path(sys.executable).parent), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [str(program), "--config", str(ROOT / ".importlinter"), "--no-cache"],
        cwd=src, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_import_contracts_hold():
    result = lint_imports(SRC)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    "module, line, broken",
    [
        # an upward import, inside a function as lazy imports are: audio may not know the front ends
        ("audio/io.py", "def _upward():\n    from ..cli import main\n", "Layers"),
        # a circle between two modules of one package: fused_linear imports layers, which imports it
        ("model/fused_linear.py", "def _circle():\n    from .layers import DassMLP\n", "No import circles"),
    ],
)
def test_the_contracts_fail_on_an_upward_import_or_a_circle(tmp_path, module, line, broken):
    copy = tmp_path / "src"
    shutil.copytree(SRC / "transformers_dass", copy / "transformers_dass", ignore=shutil.ignore_patterns("*.safetensors"))
    target = copy / "transformers_dass" / module
    target.write_text(target.read_text() + "\n\n" + line)
    result = lint_imports(copy)
    assert result.returncode != 0
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout


def test_the_package_import_loads_no_evaluation_training_or_front_end_code():
    code = (
        "import sys, transformers_dass; "
        "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('transformers_dass.')}))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert eval(loaded) == ["audio", "model", "ops", "utils"]  # noqa: S307 - our own printed list


def test_the_demo_page_decodes_once_and_runs_the_model_once(monkeypatch):
    """`Tagger.analyse` (the page and its API): one decode of the upload, one forward; labels and timeline both
    come from it (their equality with `dass classify` / `dass timeline` is tested in test_webapp_api)."""
    import transformers_dass.audio.io as audio_io
    import transformers_dass.audio.stream as stream
    import transformers_dass.inference.features as features
    from transformers_dass.webapp.analysis import Tagger

    tagger = Tagger()
    decodes = []
    real_read, real_stream = audio_io._read, stream.stream_audio
    monkeypatch.setattr(audio_io, "_read", lambda source: decodes.append(source) or real_read(source))
    monkeypatch.setattr(features, "stream_audio", lambda *a, **k: decodes.append(a[0]) or real_stream(*a, **k))
    forwards = []
    tagger.model.register_forward_pre_hook(lambda module, args: forwards.append(1))

    analysis = tagger.analyse(EXAMPLES / "scene_siren_three.wav")

    assert len(decodes) == 1 and len(forwards) == 1
    steps_of_10_s = 1000 // tagger.model.config.fine_step_frames  # 1000 frames, 4 frames (40 ms) a step
    assert analysis.labels and len(analysis.timeline.times) == steps_of_10_s == 250
    assert set(list(analysis.labels)[:2]) == {"siren", "three"}


def test_a_long_file_is_read_in_blocks_and_still_run_once(monkeypatch, tmp_path):
    """Beyond `LONG_FILE_SECONDS` the features come from the block stream (two passes over the file: the clip mean,
    then the frames), never from a whole-file decode, and the model still runs once."""
    import numpy as np
    import soundfile

    import transformers_dass.inference.features as features
    from transformers_dass.inference.classify import classify_file
    from transformers_dass.inference.loading import load_model

    path = tmp_path / "long.wav"
    soundfile.write(path, np.tile(soundfile.read(EXAMPLES / "scene_siren_three.wav")[0], 2), 16000)  # 20 s
    loaded = load_model(dtype="float32")
    forwards = []
    loaded.model.register_forward_pre_hook(lambda module, args: forwards.append(1))
    monkeypatch.setattr(features, "load_audio", lambda *a, **k: pytest.fail("decoded whole"))

    analysis = classify_file(path, loaded.model, loaded.extractor, top_k=3, timeline=True, long_file_seconds=15.0)
    assert len(forwards) == 1
    assert analysis.duration_s == pytest.approx(20.0, abs=0.01)
    assert analysis.timeline.times[-1, 1] == pytest.approx(20.0, abs=0.03)
