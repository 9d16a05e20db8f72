"""The Hub model cards in model_cards/: metadata block, citation, and `dass` commands our CLI accepts.

Cheap text checks (no model is built). The reported mAP values and Hub ids below are the ones issue 7 and the
authors' README list for the published checkpoints, so a card whose metadata drifts from them fails.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from transformers_dass.cli import build_parser

CARDS_DIR = Path(__file__).resolve().parents[1] / "model_cards"
DEMO_CARD = "dass-demo-digits.md"
DEMO_RESULTS_SECTION = "Training and measured results"
PUBLISHED = {
    "dass-small-ast.md": ("saurabhati/DASS_small_AudioSet_47.2", 47.2),
    "dass-medium-ast.md": ("saurabhati/DASS_medium_AudioSet_47.6", 47.6),
    "dass-small-ast-htsat.md": ("saurabhati/DASS_small_AudioSet_48.6", 48.6),
    "dass-medium-ast-htsat.md": ("saurabhati/DASS_medium_AudioSet_48.9", 48.9),
    "dass-small-sslam.md": ("saurabhati/DASS_small_AudioSet_50.1", 50.1),
    "dass-medium-sslam.md": ("saurabhati/DASS_medium_AudioSet_50.2", 50.2),
}
ALL_CARDS = sorted([*PUBLISHED, DEMO_CARD])


def read_card(name: str) -> str:
    path = CARDS_DIR / name
    assert path.is_file(), f"model card {path} is missing"
    return path.read_text(encoding="utf-8")


def split_card(text: str) -> tuple[dict, str]:
    """(metadata, body) of a Hub card: YAML between a first line `---` and the next `---` line."""
    match = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
    if match is None:
        raise AssertionError("the card does not start with a YAML metadata block (--- ... ---)")
    metadata = yaml.safe_load(match.group(1))
    if not isinstance(metadata, dict):
        raise AssertionError(f"the metadata block is not a mapping: {metadata!r}")
    return metadata, text[match.end() :]


def section(body: str, title: str) -> str:
    """Text of the `## title` section, up to the next level-2 heading (empty if absent)."""
    match = re.search(rf"^## {re.escape(title)}[ \t]*\n(.*?)(?=^## |\Z)", body, re.DOTALL | re.MULTILINE)
    return match.group(1) if match else ""


def code_blocks(text: str, language: str | None = None) -> list[str]:
    blocks = re.findall(r"^```([\w-]*)[ \t]*\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    return [code for lang, code in blocks if language is None or lang == language]


def dass_commands(text: str) -> list[list[str]]:
    """Arguments (after `dass`) of every `dass ...` shell command in the text's code blocks."""
    commands = []
    for block in code_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["dass"]:
                commands.append(words[1:])
    return commands


def parse(argv: list[str]):
    try:
        return build_parser().parse_args(argv)
    except SystemExit:
        raise AssertionError(f"`dass {shlex.join(argv)}` is refused by the CLI parser") from None


def test_every_expected_card_exists():
    present = {path.name for path in CARDS_DIR.glob("*.md")}
    assert set(ALL_CARDS) <= present, f"missing cards: {sorted(set(ALL_CARDS) - present)}"


@pytest.mark.parametrize("name", ALL_CARDS)
def test_metadata_block_has_the_hub_keys(name):
    metadata, _ = split_card(read_card(name))
    missing = [key for key in ("license", "tags", "library_name", "pipeline_tag") if not metadata.get(key)]
    assert not missing, f"{name}: metadata lacks {missing}"
    assert metadata["pipeline_tag"] == "audio-classification"
    assert metadata["library_name"] in ("transformers-dass", "transformers")
    assert isinstance(metadata["tags"], list) and "audio-classification" in metadata["tags"]
    assert isinstance(metadata["license"], str)


@pytest.mark.parametrize("name", ALL_CARDS)
def test_citation_section_holds_the_dass_bibtex(name):
    _, body = split_card(read_card(name))
    entries = code_blocks(section(body, "Citation"), "bibtex")
    assert entries, f"{name}: no ```bibtex block under '## Citation'"
    assert any(re.match(r"\s*@\w+\{\w+,", entry) and "2407.04082" in entry for entry in entries)


@pytest.mark.parametrize("name", ALL_CARDS)
def test_every_dass_command_parses(name):
    for argv in dass_commands(read_card(name)):
        parse(argv)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_conversion_command_converts_the_hub_folder_with_labels(name):
    hub_id, _ = PUBLISHED[name]
    _, body = split_card(read_card(name))
    converts = [parse(argv) for argv in dass_commands(section(body, "Conversion")) if argv[:1] == ["convert"]]
    assert converts, f"{name}: no `dass convert` command under '## Conversion'"
    for args in converts:
        assert args.labels_csv, f"{name}: the conversion command has no --labels-csv"
        assert Path(args.checkpoint).name == hub_id.split("/")[1]
        assert args.output_dir


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_model_index_reports_the_published_map_with_a_source(name):
    hub_id, reported_map = PUBLISHED[name]
    metadata, body = split_card(read_card(name))
    (entry,) = metadata["model-index"]
    (result,) = entry["results"]
    assert result["task"]["type"] == "audio-classification"
    values = [metric["value"] for metric in result["metrics"] if metric["type"] == "mAP"]
    assert values == [reported_map]
    assert result["source"]["url"].startswith("https://")
    assert hub_id in body
    assert section(body, "Evaluation").count(f"**{reported_map}**") == 1


@pytest.mark.parametrize("name", ALL_CARDS)
def test_cards_have_no_placeholders(name):
    assert not re.search(r"\{\{[^}]*\}\}", read_card(name)), f"{name} still has a {{...}} placeholder"


def test_demo_card_matches_the_bundled_model():
    """The demo card is the README.md of the folder that ships in the package, and reports its size and labels."""
    from transformers_dass import DassConfig
    from transformers_dass.inference.loading import DEMO_MODEL_DIR

    card = read_card(DEMO_CARD)
    assert (DEMO_MODEL_DIR / "README.md").read_text(encoding="utf-8") == card
    config = DassConfig.from_pretrained(DEMO_MODEL_DIR)
    results = " ".join(section(split_card(card)[1], DEMO_RESULTS_SECTION).split())  # one line: no wrapping
    assert ", ".join(f"`{config.id2label[i]}`" for i in range(config.num_labels)) in results
    assert f"dims={config.dims}, depths={config.depths}" in results
