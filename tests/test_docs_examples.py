"""The Python examples of README.md and docs/*.md run, so that they cannot rot.

Every ```python block is executed on its own, in a fresh namespace, with a temporary folder holding a copy of
`examples/` as the working directory (the examples read `examples/*.wav` as a user at the root of a clone would, and
write their outputs there). Tracebacks name the Markdown file and its line.

A block that cannot run here (it needs the network, a converted AudioSet checkpoint, a GPU, a running server, a file
made elsewhere) starts with a marker line, reported as a skip with its reason:

    # doc-test: skip (needs the AudioSet checkpoint)

A block whose third-party import is not installed (an optional extra) skips, naming the module; an import of this
package that fails is an error, as the example is then out of date.
"""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]

# An opening fence ```python at any indentation, its body, and the closing fence at the same indentation.
FENCE = re.compile(r"^(?P<indent>[ \t]*)```python[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.S | re.M)
MARKER = re.compile(r"^#\s*doc-test\s*:")
SKIP = re.compile(r"^#\s*doc-test\s*:\s*skip\s*\((?P<reason>[^)]*\S[^)]*)\)\s*$")


class Example:
    def __init__(self, path: Path, line: int, code: str):
        self.path, self.line, self.code = path, line, code
        first = code.lstrip("\n").splitlines()[0] if code.strip() else ""
        self.marker = first.strip() if MARKER.match(first.strip()) else None
        match = SKIP.match(first.strip())
        self.skip_reason = match["reason"].strip() if match else None

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"


def python_examples(path: Path) -> list[Example]:
    """The ```python blocks of one Markdown file, with the line number of each block's first code line."""
    text = path.read_text(encoding="utf-8")
    examples = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start("body")) + 1
        examples.append(Example(path, line, textwrap.dedent(match["body"])))
    return examples


EXAMPLES = [example for path in DOCUMENTS for example in python_examples(path)]


@pytest.fixture
def in_scratch_folder(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("example", EXAMPLES, ids=[example.name for example in EXAMPLES])
def test_example_runs(example, in_scratch_folder):
    if example.marker is not None and example.skip_reason is None:
        pytest.fail(f"{example.name}: malformed marker {example.marker!r}; write `# doc-test: skip (REASON)`")
    if example.skip_reason is not None:
        pytest.skip(f"{example.name}: {example.skip_reason}")
    # Blank lines in front, so that the code's line numbers are the Markdown file's in tracebacks.
    code = compile("\n" * (example.line - 1) + example.code, str(example.path), "exec")
    namespace = {"__name__": "__doc_example__"}
    try:
        exec(code, namespace)
    except ModuleNotFoundError as error:
        missing = (error.name or "").split(".")[0]
        if not missing or missing == "transformers_dass":
            raise
        pytest.skip(f"{example.name}: needs {missing}, not installed (an optional extra)")


def test_the_documents_have_examples_and_the_readme_one_runs():
    """The README's Python example is never skipped (it is the one a newcomer copies), and the collection found
    the other pages' examples (a broken fence pattern would silently test nothing)."""
    readme = [example for example in EXAMPLES if example.path == README]
    assert readme, "README.md has no ```python example"
    runnable = [example for example in readme if example.marker is None]
    assert runnable, "README.md's Python examples are all marked `# doc-test: skip`; the README's example must run"
    assert len({example.path for example in EXAMPLES}) >= 5, sorted({example.name for example in EXAMPLES})
