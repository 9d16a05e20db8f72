"""`dass tag --segments --median-filter`: the segments of `dass timeline --median-filter`, recorded in the table."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_tagging import SCORE_TOL, clips, model_dir  # noqa: F401 - fixtures
from transformers_dass.cli import main as cli_main
from transformers_dass.inference.classify import timeline_of_file
from transformers_dass.inference.loading import load_model_and_extractor
from transformers_dass.inference.timeline import segments
from transformers_dass.tagging import RunOptionsError, read_rows, tag


def test_segments_are_those_of_the_median_filtered_timeline(clips, model_dir):  # noqa: F811
    options = dict(model=str(model_dir), segments=True, num_workers=0, show_progress=False)
    rows = tag(clips, median_filter_s=0.64, **options).rows
    plain = tag(clips, **options).rows
    assert sum(map(len, (row["segments"] for row in rows))) >= 3
    assert [row["segments"] for row in rows] != [row["segments"] for row in plain]  # the filter changed some
    model, extractor = load_model_and_extractor(str(model_dir))
    for row, path in zip(rows, clips):
        reference = segments(timeline_of_file(path, model, extractor, show_progress=False, median_filter_s=0.64), 0.5)
        assert [(s["start_s"], s["end_s"], s["label"]) for s in row["segments"]] == [
            (s.start, s.end, s.label) for s in reference
        ], path
        np.testing.assert_allclose([s["score"] for s in row["segments"]], [s.score for s in reference], atol=SCORE_TOL)
    with pytest.raises(ValueError, match="median_filter_s"):
        tag(clips, median_filter_s=-1.0, **options)


def test_a_table_records_the_median_filter(clips, model_dir, tmp_path):  # noqa: F811
    output = tmp_path / "tags.jsonl"
    command = ["tag", *map(str, clips[:2]), "--model", str(model_dir), "--output", str(output), "--segments",
               "--num-workers", "0", "--dtype", "float32"]  # fmt: skip
    assert cli_main([*command, "--median-filter", "0.64"]) == 0
    assert len(read_rows(output)) == 2
    with pytest.raises(RunOptionsError, match="median_filter_s"):
        tag(clips[:2], model=str(model_dir), output=output, segments=True, num_workers=0, show_progress=False)
