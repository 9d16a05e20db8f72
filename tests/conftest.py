"""Shared test fixtures. Reference tensors live in tests/fixtures (computed by the authors' code and by
torchaudio; see tests/fixtures/README.md), so a clone from anywhere runs every parity test."""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def require_fixture(name: str) -> Path:
    """Path of a reference file of tests/fixtures; a missing one is a broken checkout, so the test fails."""
    path = FIXTURES / name
    if not path.exists():
        pytest.fail(f"reference fixture {path} is missing from the repository (restore it with git checkout)")
    return path


def hide_package(monkeypatch, package: str) -> None:
    """Make `import package` (and its submodules) fail as if it were not installed, for this test only: what a user
    without that optional dependency sees."""
    real_import = builtins.__import__

    def without_package(name, *args, **kwargs):
        if name.split(".")[0] == package:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_package)


@pytest.fixture(scope="session")
def original_tiny() -> dict[str, torch.Tensor]:
    """The authors' tiny DASS: `module.v.*` weights, inputs, logits and hidden states."""
    from safetensors.torch import load_file

    return load_file(str(require_fixture("original_tiny.safetensors")))


@pytest.fixture(scope="session")
def original_tiny_weights(original_tiny) -> dict[str, torch.Tensor]:
    return {k: v for k, v in original_tiny.items() if k.startswith("module.")}


@pytest.fixture(scope="session")
def converted_tiny(tmp_path_factory, original_tiny_weights) -> Path:
    """original_tiny converted to a model folder (config.json, model.safetensors, preprocessor_config.json)."""
    from safetensors.torch import save_file

    from transformers_dass.model.conversion import convert_checkpoint

    folder = tmp_path_factory.mktemp("converted_tiny")
    checkpoint = folder / "original.safetensors"
    save_file(original_tiny_weights, str(checkpoint))
    convert_checkpoint(checkpoint, folder / "model")
    return folder / "model"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
