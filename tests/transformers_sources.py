"""transformers' own common test suites (and example scripts), taken from the source distribution of the installed
transformers version at test time: nothing of them is copied into this repository.

`pip download --no-binary :all: transformers==<installed>` fetches the sdist once into the user cache
(`$XDG_CACHE_HOME/transformers-dass`, else `~/.cache/transformers-dass`); later runs reuse it. Without a registry
(offline) the tests that need it skip, saying so.

The sdist ships `tests/test_*_common.py` but not three small modules they import; `common_suite` supplies those as
stand-ins, each saying what it replaces (see `_STAND_INS`). It ships no `examples/` folder either:
`example_script` then looks in `$TRANSFORMERS_EXAMPLES_DIR` (the `examples/` folder of a transformers checkout of
the same version) and skips, naming that variable, when it is unset.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

import pytest
import transformers

VERSION = transformers.__version__
# The sdist's tests/ folder, importable as a package under this name (ours is already called `tests`).
PACKAGE = "transformers_sdist_tests"

# Modules the sdist's common suites import but the sdist leaves out: (path in the package, source).
_STAND_INS = {
    "exporters/test_export.py": '''"""Stand-in: the sdist omits tests/exporters; its torch.export tests do not run from here."""


class ExportTesterMixin:
    pass
''',
    "generation/test_utils.py": '''"""Stand-in: the sdist omits tests/generation. DASS does not generate: its tester must not inherit this."""


class GenerationTesterMixin:
    pass
''',
    "utils/test_configuration_utils.py": '''"""Stand-in for tests/utils/test_configuration_utils.py, which the sdist omits: keyword arguments that every
`PreTrainedConfig` accepts, with values other than their defaults (ConfigTester checks that each one is kept)."""

config_common_kwargs = {
    "return_dict": False,
    "output_hidden_states": True,
    "dtype": "float16",
    "chunk_size_feed_forward": 5,
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
}
''',
}


def cache_dir() -> Path:
    """`$XDG_CACHE_HOME/transformers-dass` (else `~/.cache/transformers-dass`), created if needed."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = Path(base) / "transformers-dass"
    path.mkdir(parents=True, exist_ok=True)
    return path


def transformers_sdist() -> Path:
    """Root of the unpacked source distribution of the installed transformers; downloads it once, or skips."""
    root = cache_dir() / f"transformers-{VERSION}"
    if (root / "PKG-INFO").is_file():
        return root
    with tempfile.TemporaryDirectory(dir=cache_dir()) as scratch:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                   f"transformers=={VERSION}", "--dest", scratch]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            pytest.skip(f"transformers {VERSION}'s source distribution: pip download timed out (offline?)",
                        allow_module_level=True)
        archives = list(Path(scratch).glob("transformers-*.tar.gz"))
        if done.returncode != 0 or not archives:
            errors = [line for line in done.stderr.splitlines() if "ERROR" in line or "Error" in line]
            pytest.skip(f"transformers {VERSION}'s source distribution could not be downloaded (offline?): "
                        f"{(errors or done.stderr.splitlines() or ['no archive'])[-1]}", allow_module_level=True)
        with tarfile.open(archives[0]) as archive:
            archive.extractall(scratch, filter="data")
        unpacked = Path(scratch) / f"transformers-{VERSION}"
        if not root.exists():  # another process may have finished first
            unpacked.rename(root)
    return root


def common_suite(module: str) -> ModuleType:
    """Import `tests/<module>.py` of the sdist (e.g. "test_modeling_common") as `transformers_sdist_tests.<module>`."""
    package = cache_dir() / f"suites-{VERSION}" / PACKAGE
    if not (package / "__init__.py").is_file():
        sources = transformers_sdist() / "tests"
        staging = Path(tempfile.mkdtemp(dir=cache_dir()))
        shutil.copytree(sources, staging / PACKAGE)
        for relative, text in _STAND_INS.items():
            target = staging / PACKAGE / relative
            if target.exists():
                continue  # a later sdist ships the real module: use it
            target.parent.mkdir(parents=True, exist_ok=True)
            (target.parent / "__init__.py").touch()
            target.write_text(text, encoding="utf-8")
        (staging / PACKAGE / "__init__.py").touch()
        package.parent.mkdir(parents=True, exist_ok=True)
        if not package.exists():
            (staging / PACKAGE).rename(package)
        shutil.rmtree(staging, ignore_errors=True)
    if str(package.parent) not in sys.path:
        sys.path.insert(0, str(package.parent))
    return importlib.import_module(f"{PACKAGE}.{module}")


def example_script(relative: str) -> Path:
    """An example script of transformers (e.g. "pytorch/audio-classification/run_audio_classification.py"): from
    the sdist when it ships `examples/`, else from `$TRANSFORMERS_EXAMPLES_DIR`; skips when neither has it."""
    candidates = [transformers_sdist() / "examples" / relative]
    if os.environ.get("TRANSFORMERS_EXAMPLES_DIR"):
        candidates.insert(0, Path(os.environ["TRANSFORMERS_EXAMPLES_DIR"]) / relative)
    for path in candidates:
        if path.is_file():
            return path
    pytest.skip(f"transformers {VERSION}'s source distribution ships no examples/ folder; set TRANSFORMERS_EXAMPLES_DIR "
                f"to the examples/ folder of a transformers {VERSION} checkout to run examples/{relative}")
