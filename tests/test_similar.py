"""`dass similar`: a file's own copies (lossy re-encoded, or with added noise) rank first among distractors in a
`dass tag --embeddings` table; the cosine ranking equals a float64 computation; a table without embeddings or
tagged with another model is refused with the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.test_tagging import clips, model_dir  # noqa: F401 - fixtures
from tests.tolerances import gamma
from transformers_dass.cli import main as cli_main
from transformers_dass.tagging import tag
from transformers_dass.tagging.index import EmbeddingIndex, cosine_top_k
from transformers_dass.tagging.similar import similar

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
QUERIES = ["seven_in_babble.wav", "scene_siren_three.wav"]


def test_cosine_top_k_equals_a_float64_reference():
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((60, 16)).astype(np.float32)
    rows[7] = 0.0  # a zero row scores 0, not NaN
    index = EmbeddingIndex([f"r{i}" for i in range(60)], [None] * 60, rows)
    query = rng.standard_normal(16).astype(np.float32)
    reference = np.array([float(np.dot(r, query)) for r in rows.astype(np.float64)])
    reference /= np.maximum(np.linalg.norm(rows.astype(np.float64), axis=1), 1e-300) * np.linalg.norm(query)
    found, scores = cosine_top_k(query, index.vectors, 10)
    # float32: normalising rows and query (16-term sums, a root, a division) and a 16-term dot product
    np.testing.assert_allclose(scores, reference[found], atol=gamma(64), rtol=0)
    assert list(found) == list(np.argsort(-reference, kind="stable")[:10])
    assert scores[0] > scores[-1] and reference[7] == 0.0 and 7 not in found[:3]
    assert len(index.search(query, top_k=100)) == 60  # at most the table's rows
    with pytest.raises(ValueError, match="zero"):
        cosine_top_k(np.zeros(16, np.float32), index.vectors, 3)
    with pytest.raises(ValueError, match="--model"):
        index.search(np.ones(8, np.float32))


def write_archive(folder: Path) -> dict[str, list[Path]]:
    """Two copies of each query (lossy Ogg Vorbis; plus white noise at 20 dB SNR) and distractors cut from the
    same recordings and synthesised. Returns {query name: its copies}."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    copies = {}
    for name in QUERIES:
        audio, rate = soundfile.read(EXAMPLES / name, dtype="float32")
        stem = Path(name).stem
        soundfile.write(folder / f"{stem}_reencoded.ogg", audio, rate, format="OGG", subtype="VORBIS")
        noise = rng.standard_normal(audio.shape).astype(np.float32)
        noise *= np.sqrt(np.mean(audio**2) / np.mean(noise**2) / 10 ** (20 / 10))
        soundfile.write(folder / f"{stem}_noisy.wav", audio + noise, rate)
        copies[name] = [folder / f"{stem}_reencoded.ogg", folder / f"{stem}_noisy.wav"]
        for start in np.arange(0.0, len(audio) / rate - 1.0, 2.5):  # parts of the same recording
            part = audio[int(start * rate) : int((start + 2.0) * rate)]
            soundfile.write(folder / f"{stem}_part{start:04.1f}.wav", part, rate)
    t = np.arange(3 * 16000) / 16000
    soundfile.write(folder / "tone.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    soundfile.write(folder / "noise.wav", (0.1 * rng.standard_normal(t.shape)).astype(np.float32), 16000)
    return copies


def test_a_files_own_copies_rank_first_among_distractors(tmp_path, capsys):
    copies = write_archive(tmp_path / "archive")
    table = tmp_path / "index.parquet"
    command = ["tag", str(tmp_path / "archive"), "--output", str(table), "--embeddings", "--dtype", "float32",
               "--num-workers", "0", "--no-progress"]  # fmt: skip
    assert cli_main(command) == 0
    archive_size = len(list((tmp_path / "archive").iterdir()))
    assert archive_size == 11  # 2 copies each, parts: 1 of the 3 s clip, 4 of the 10 s scene; tone, noise
    for name in QUERIES:
        capsys.readouterr()
        assert cli_main(["similar", str(EXAMPLES / name), "--index", str(table), "--top-k", "5", "--json"]) == 0
        found = json.loads(capsys.readouterr().out)
        assert {item["id"] for item in found[:2]} == {str(path) for path in copies[name]}, (name, found)
        assert found[0]["score"] >= found[1]["score"] > found[2]["score"]
    # The same from Python, with the index loaded once; copied without its .parts folder it still searches (with a
    # warning that the model cannot be checked).
    alone = tmp_path / "elsewhere" / "index.parquet"
    alone.parent.mkdir()
    shutil.copy(table, alone)
    matches = similar(EXAMPLES / QUERIES[0], alone, top_k=archive_size + 5, dtype="float32")
    assert len(matches) == archive_size and {m.id for m in matches[:2]} == {str(p) for p in copies[QUERIES[0]]}


def test_a_table_without_embeddings_or_of_another_model_is_refused(clips, model_dir, tmp_path, capsys):  # noqa: F811
    plain = tmp_path / "plain.jsonl"
    tag(clips[:2], model=str(model_dir), output=plain, num_workers=0, show_progress=False)
    assert cli_main(["similar", str(clips[0]), "--index", str(plain), "--model", str(model_dir)]) == 2
    assert "--embeddings" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no `embedding` column.*--embeddings"):
        EmbeddingIndex.from_table(plain)
    tiny = tmp_path / "tiny.csv"
    tag(clips[:3], model=str(model_dir), output=tiny, embeddings=True, num_workers=0, show_progress=False)
    with pytest.raises(ValueError, match="another model.*--model"):
        similar(clips[0], tiny)  # the demo model, not the one it was tagged with
    found = similar(clips[0], tiny, model=str(model_dir), top_k=1)
    assert found[0].id == str(clips[0]) and found[0].score == pytest.approx(1.0, abs=gamma(64))
    with pytest.raises(FileNotFoundError, match="--embeddings"):
        EmbeddingIndex.from_table(tmp_path / "missing.parquet")
