"""transformers_dass.training.data: streamed AudioSet-schema parquet, labels, decoding, augmentation, sharding, balancing.

The helpers at the top write a tiny dataset in the schema of the Hub AudioSet datasets (`video_id`, `audio` as
48 / 44.1 kHz FLAC bytes, `labels` = mids, `human_labels`); test_distillation.py and test_train_script.py use
them too.
"""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
import soundfile
import torch
from datasets import Audio, Dataset, Features, IterableDataset, List, Value

from transformers_dass import DassConfig, DassFeatureExtractor
from transformers_dass.audio.decoding import decode_audio
from transformers_dass.training.data import (
    ClassBalancedRepeat,
    DassAudioCollator,
    LabelEncoder,
    TeacherLogitsTable,
    class_balanced_stream,
    class_label_names,
    clip_weight,
    count_labels,
    load_audio_dataset,
    mixup,
    spec_augment,
    split_for_node,
)

from .conftest import require_fixture

MAX_LENGTH = 100  # frames: 1.015 s
# Real AudioSet classes (mid, display name) and a tone for each, so that a model can tell them apart.
CLASSES = [
    ("/m/09x0r", "Speech", 300.0),
    ("/m/04rlf", "Music", 900.0),
    ("/m/0bt9lr", "Dog", 1800.0),
    ("/m/07yv9", "Vehicle", 3500.0),
]
STORAGE_FEATURES = Features(
    {
        "video_id": Value("string"),
        "audio": {"bytes": Value("binary"), "path": Value("string")},
        "labels": List(Value("string")),
        "human_labels": List(Value("string")),
    }
)


def labels_csv() -> Path:
    return require_fixture("class_labels_indices.csv")


def flac_bytes(seconds: float, rate: int, tone: float, seed: int) -> bytes:
    """A tone plus a little noise, encoded as FLAC at `rate`."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    wave = 0.3 * np.sin(2 * np.pi * tone * t) + 0.02 * rng.standard_normal(t.size)
    buffer = io.BytesIO()
    soundfile.write(buffer, wave.astype(np.float32), rate, format="FLAC")
    return buffer.getvalue()


def audioset_row(index: int, classes: list[int], rate: int = 48000, seconds: float = 1.1, audio=None) -> dict:
    """One row in the Hub AudioSet schema; the audio is the tones of `classes` (first one) unless given."""
    mids = [CLASSES[c][0] for c in classes]
    if audio is None:
        audio = flac_bytes(seconds, rate, CLASSES[classes[0]][2], seed=index)
    return {
        "video_id": f"clip{index:04d}",
        "audio": {"bytes": audio, "path": f"clip{index:04d}.flac"},
        "labels": mids,
        "human_labels": [CLASSES[c][1] for c in classes],
    }


def write_parquet(rows: list[dict], path: Path) -> Path:
    """Rows written as the Hub writes them: `audio` typed as `Audio` (cast from its storage struct, which needs no
    torchcodec), so that reading it back goes through the same cast as the real dataset."""
    Dataset.from_list(rows, features=STORAGE_FEATURES).cast_column("audio", Audio()).to_parquet(str(path))
    return path


def write_audioset_shards(folder: Path, shards: int = 2, clips_per_shard: int = 8, prefix: str = "train") -> list[Path]:
    """`shards` parquet files of AudioSet-schema clips at 48 and 44.1 kHz, one or two real labels each."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for shard in range(shards):
        rows = []
        for i in range(clips_per_shard):
            index = shard * clips_per_shard + i
            classes = [index % 4] if index % 3 else [index % 4, (index + 1) % 4]
            rows.append(audioset_row(index, classes, rate=48000 if index % 2 == 0 else 44100))
        paths.append(write_parquet(rows, folder / f"{prefix}-{shard:05d}-of-{shards:05d}.parquet"))
    return paths


def tiny_extractor() -> DassFeatureExtractor:
    return DassFeatureExtractor(max_length=MAX_LENGTH)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("audioset")
    write_audioset_shards(folder)
    return folder


@pytest.fixture(scope="module")
def encoder() -> LabelEncoder:
    return LabelEncoder.from_csv(labels_csv())


def stream(folder: Path) -> IterableDataset:
    return load_audio_dataset(data_files=str(folder / "train-*.parquet"), streaming=True)


# ------------------------------------------------------------------------------------------------------------
# loading and decoding
# ------------------------------------------------------------------------------------------------------------


def test_streamed_parquet_keeps_audio_encoded_and_decodes_to_16k(shards):
    dataset = stream(shards)
    assert isinstance(dataset, IterableDataset) and dataset.n_shards == 2
    assert dataset.features["audio"] == Audio(decode=False)
    rows = list(dataset)
    assert len(rows) == 16 and isinstance(rows[0]["audio"]["bytes"], bytes)
    for row in rows[:2]:  # one 48 kHz and one 44.1 kHz clip
        assert soundfile.info(io.BytesIO(row["audio"]["bytes"])).samplerate in (48000, 44100)
        waveform = decode_audio(row["audio"])
        assert waveform.dtype == np.float32 and waveform.shape == (17600,)  # 1.1 s at 16 kHz
        # The tone survives resampling: the spectrum peaks at its frequency.
        tone = next(t for mid, _, t in CLASSES if mid == row["labels"][0])
        peak_hz = np.argmax(np.abs(np.fft.rfft(waveform))) * 16000 / waveform.shape[0]
        assert abs(peak_hz - tone) < 2


def test_decode_audio_accepts_bytes_paths_and_arrays(tmp_path):
    data = flac_bytes(0.5, 48000, 440.0, seed=0)
    path = tmp_path / "a.flac"
    path.write_bytes(data)
    from_bytes = decode_audio(data)
    np.testing.assert_array_equal(decode_audio({"bytes": None, "path": str(path)}), from_bytes)
    np.testing.assert_array_equal(decode_audio(str(path)), from_bytes)
    array = decode_audio({"array": np.ones(8000), "sampling_rate": 16000})
    assert array.shape == (8000,)


@pytest.mark.parametrize(
    "value, message",
    [
        ({"bytes": b"not audio at all", "path": "x.flac"}, "could not decode"),
        ({"bytes": b"", "path": None}, "neither bytes nor a path"),
        ({"bytes": flac_bytes(0.01, 48000, 440.0, seed=0), "path": "short.flac"}, "shorter than one"),
        (12, "unsupported audio value"),
    ],
)
def test_decode_audio_rejects_unusable_clips(value, message):
    from transformers_dass.audio.decoding import AudioDecodeError

    with pytest.raises(AudioDecodeError, match=message):
        decode_audio(value)


def test_audiofolder_class_labels(tmp_path):
    for name in ("Dog", "Music"):
        (tmp_path / name).mkdir()
        for i in range(2):
            soundfile.write(tmp_path / name / f"{i}.wav", np.zeros(8000, np.float32) + 0.1 * i, 16000)
    dataset = load_audio_dataset("audiofolder", data_dir=str(tmp_path), streaming=True)
    names = class_label_names(dataset, "label")
    assert sorted(names) == ["Dog", "Music"]
    encoder = LabelEncoder.from_csv(labels_csv(), index_names=names)
    collator = DassAudioCollator(tiny_extractor(), encoder, max_length=MAX_LENGTH, label_column="label", id_column=None)
    rows = list(dataset)
    batch = collator(rows)
    expected = [encoder.names.index(names[row["label"]]) for row in rows]
    assert batch["labels"].argmax(dim=1).tolist() == expected


# ------------------------------------------------------------------------------------------------------------
# labels
# ------------------------------------------------------------------------------------------------------------


def test_label_encoder_multi_hot_from_csv_and_config(encoder, caplog):
    assert encoder.num_labels == 527
    target = encoder.encode(["/m/09x0r", "/m/04rlf"])
    assert target.shape == (527,) and target.dtype == np.float32
    assert np.flatnonzero(target).tolist() == [0, 137] and target.sum() == 2
    np.testing.assert_array_equal(encoder.encode(["Speech", "Music"]), target)  # display names
    np.testing.assert_array_equal(encoder.encode([0, 137]), target)  # indices
    assert encoder.encode([]).sum() == 0  # a clip explicitly without events

    config = DassConfig(num_labels=527, id2label=dict(enumerate(encoder.names)), label_mids=encoder.mids)
    from_config = LabelEncoder.from_config(config)
    np.testing.assert_array_equal(from_config.encode(["/m/09x0r", "/m/04rlf"]), target)
    assert from_config.same_vocabulary(config) and encoder.same_vocabulary(config)

    with caplog.at_level(logging.WARNING):
        partly = encoder.encode(["/m/09x0r", "/m/not_a_mid"])
        assert encoder.encode(["/m/not_a_mid"]) is None  # only unknown labels: not a "no event" clip
    assert np.flatnonzero(partly).tolist() == [0]
    assert encoder.unknown_counts["/m/not_a_mid"] == 2
    assert "/m/not_a_mid" in caplog.text


def test_label_encoder_integer_labels_through_class_names():
    encoder = LabelEncoder(["a", "b", "c"], index_names=["c", "a"])
    assert np.flatnonzero(encoder.encode(0)).tolist() == [2]
    assert np.flatnonzero(encoder.encode([1, 0])).tolist() == [0, 2]


# ------------------------------------------------------------------------------------------------------------
# collator and bad input
# ------------------------------------------------------------------------------------------------------------


def test_collator_features_and_targets(shards, encoder):
    rows = list(stream(shards))[:4]
    batch = DassAudioCollator(tiny_extractor(), encoder, max_length=MAX_LENGTH)(rows)
    assert set(batch) == {"input_values", "labels"}
    assert batch["input_values"].shape == (4, MAX_LENGTH, 128) and batch["input_values"].dtype == torch.float32
    expected = tiny_extractor()(
        [decode_audio(r["audio"]) for r in rows], sampling_rate=16000, return_tensors="pt", truncation=True
    )
    torch.testing.assert_close(batch["input_values"], expected["input_values"])
    for row, target in zip(rows, batch["labels"]):
        assert sorted(torch.nonzero(target).flatten().tolist()) == sorted(encoder.mids.index(m) for m in row["labels"])


def test_collator_skips_bad_clips_with_counted_warnings(shards, encoder, caplog):
    good = list(stream(shards))[:2]
    bad = [
        audioset_row(900, [0], audio=b"garbage bytes"),
        audioset_row(901, [0], audio=b""),
        audioset_row(902, [0], audio=flac_bytes(0.02, 48000, 300.0, seed=1)),  # 320 samples at 16 kHz < 400
        {**audioset_row(903, [0]), "labels": ["/m/unknown"]},
    ]
    collator = DassAudioCollator(tiny_extractor(), encoder, max_length=MAX_LENGTH)
    with caplog.at_level(logging.WARNING):
        batch = collator(bad[:2] + good + bad[2:])
    assert batch["input_values"].shape[0] == 2
    assert collator.skips.counts == {"unusable audio": 3, "no known label": 1}
    assert "clip0900" in caplog.text and "4 in all" in caplog.text
    with pytest.raises(RuntimeError, match="all 2 rows of this batch were skipped"):
        collator(bad[:2])


# ------------------------------------------------------------------------------------------------------------
# augmentation
# ------------------------------------------------------------------------------------------------------------


def test_mixup_mixes_waveforms_and_labels_with_the_same_weight():
    rng = np.random.default_rng(0)
    waveforms = [rng.standard_normal(n).astype(np.float32) for n in (1000, 800, 1200, 1000)]
    targets = np.eye(4, 6, dtype=np.float32)
    mixed, mixed_targets, weights, partners = mixup(waveforms, targets, rate=1.0, alpha=10.0, rng=rng)
    for i, (wave, lam, j) in enumerate(zip(mixed, weights, partners)):
        assert j != i and 0 < lam < 1
        partner = np.zeros_like(waveforms[i])
        n = min(len(waveforms[j]), len(waveforms[i]))
        partner[:n] = waveforms[j][:n]  # padded or cut to the clip's length
        np.testing.assert_allclose(wave, lam * waveforms[i] + (1 - lam) * partner, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(mixed_targets[i], lam * targets[i] + (1 - lam) * targets[j], rtol=1e-6)
    assert abs(weights.mean() - 0.5) < 0.25  # Beta(10, 10) stays near 0.5

    same, same_targets, weights, partners = mixup(waveforms, targets, rate=0.0, rng=rng)
    assert all(a is b for a, b in zip(same, waveforms)) and same_targets is targets
    assert (weights == 1).all() and (partners == np.arange(4)).all()


def test_spec_augment_masks_one_band_and_one_span_per_clip():
    features = torch.randn(16, 1024, 128)
    generator = torch.Generator().manual_seed(0)
    out = spec_augment(features, freq_mask=48, time_mask=192, mask_value=7.0, generator=generator)
    assert out.shape == features.shape and not torch.equal(out, features)
    changed = out != features
    assert torch.equal(out[changed], torch.full_like(out[changed], 7.0))
    widths = []
    for clip in range(16):
        full_columns = changed[clip].all(dim=0)  # masked mel bins (whole column)
        full_rows = changed[clip].all(dim=1)  # masked frames (whole row)
        for mask, limit in ((full_columns, 48), (full_rows, 192)):
            where = torch.nonzero(mask).flatten()
            if len(where):
                assert where[-1] - where[0] + 1 == len(where) < limit  # one contiguous band
        # Every changed cell lies in the masked band or span.
        assert torch.equal(changed[clip], full_columns[None, :] | full_rows[:, None])
        widths.append(int(full_columns.sum()))
    assert max(widths) > 10  # widths are drawn up to the parameter

    assert torch.equal(spec_augment(features, 0, 0), features)


def test_collator_augments_and_mixes_teacher_logits_like_labels(shards, encoder):
    rows = list(stream(shards))[:6]
    # Teacher logits that are an affine function of the labels stay so under mixing with the same weights.
    for row in rows:
        row["teacher_logits"] = (2 * encoder.encode(row["labels"]) - 1).tolist()
    collator = DassAudioCollator(
        tiny_extractor(),
        encoder,
        MAX_LENGTH,
        teacher_logits_column="teacher_logits",
        mixup_rate=1.0,
        freq_mask=48,
        time_mask=20,
    )
    torch.manual_seed(0)
    batch = collator(rows)
    assert batch["input_values"].shape == (6, MAX_LENGTH, 128)
    assert ((batch["labels"] > 0) & (batch["labels"] < 1)).any()  # mixed
    torch.testing.assert_close(batch["teacher_logits"], 2 * batch["labels"] - 1)
    # Masked cells hold the normalised image of a raw log-mel 0, as when masking before normalising.
    extractor = tiny_extractor()
    mask_value = (0 - extractor.mean) / (2 * extractor.std)
    assert (batch["input_values"] == torch.tensor(mask_value)).sum() >= MAX_LENGTH  # at least one masked band

    plain = collator.for_evaluation()
    assert plain.mixup_rate == 0 and plain.freq_mask == 0 and plain.teacher_logits_column is None
    assert set(plain(rows)) == {"input_values", "labels"}


# ------------------------------------------------------------------------------------------------------------
# sharding, balancing, teacher logits
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("world_size", [2, 3])  # 2 divides the 2 shards (split by file), 3 does not (by example)
def test_split_for_node_partitions_the_stream(shards, world_size):
    every = [row["video_id"] for row in stream(shards)]
    parts = [
        [row["video_id"] for row in split_for_node(stream(shards), rank, world_size)] for rank in range(world_size)
    ]
    assert sorted(sum(parts, [])) == sorted(every)
    assert all(parts)


def test_class_balanced_weights_and_repeats(encoder):
    # Label 0 on 8 clips, label 137 on 2: the original weights are 1/8 and 1/2 (+ both for a clip with both).
    label_lists = [["/m/09x0r"]] * 7 + [["/m/09x0r", "/m/04rlf"]] + [["/m/04rlf"]]
    counts, clips = count_labels(label_lists, encoder)
    assert clips == 9 and counts[0] == 8 and counts[137] == 2 and counts.sum() == 10
    assert clip_weight([0], counts) == pytest.approx(1 / 8)
    assert clip_weight([0, 137], counts) == pytest.approx(1 / 8 + 1 / 2)
    repeat = ClassBalancedRepeat(encoder, counts, clips, seed=0)
    mean_weight = (7 / 8 + 5 / 8 + 1 / 2) / 9  # = 2 labels present / 9 clips
    assert repeat.mean_weight == pytest.approx(mean_weight)
    draws = np.array([[repeat.repeats(labels) for labels in label_lists] for _ in range(4000)])
    expected = np.array([1 / 8] * 7 + [5 / 8] + [1 / 2]) / mean_weight
    np.testing.assert_allclose(draws.mean(axis=0), expected, rtol=0.05)


def test_class_balanced_stream_repeats_rare_clips(shards, encoder):
    counts, clips = count_labels((row["labels"] for row in stream(shards)), encoder)
    repeat = ClassBalancedRepeat(encoder, counts, clips, seed=0)
    rows = list(class_balanced_stream(stream(shards), repeat, buffer_size=8, seed=0, input_shards=1))
    assert {"video_id", "audio", "labels", "human_labels"} <= set(rows[0])
    assert 4 <= len(rows) <= 40 and isinstance(rows[0]["audio"]["bytes"], bytes)


def test_teacher_logits_table_lookup(tmp_path, shards, encoder):
    import pyarrow as pa
    import pyarrow.parquet as pq

    logits = np.random.default_rng(0).standard_normal((3, 527)).astype(np.float32)
    pq.write_table(
        pa.table(
            {
                "video_id": ["clip0000", "clip0001", "clip0002"],
                "teacher_logits": pa.array(logits.tolist(), pa.list_(pa.float32())),
            }
        ),
        tmp_path / "logits.parquet",
    )
    table = TeacherLogitsTable(str(tmp_path / "*.parquet"), cache_dir=str(tmp_path / "cache"))
    assert len(table) == 3 and "clip0001" in table and table.get("nope") is None
    np.testing.assert_array_equal(table.get("clip0001"), logits[1])

    rows = list(stream(shards))[:5]  # clip0000..0002 have logits, two others do not
    collator = DassAudioCollator(tiny_extractor(), encoder, MAX_LENGTH, teacher_logits_table=table)
    batch = collator(rows)
    have = [r["video_id"] for r in rows if r["video_id"] in table]
    assert batch["teacher_logits"].shape == (len(have), 527)
    np.testing.assert_array_equal(batch["teacher_logits"].numpy(), np.stack([table.get(k) for k in have]))
    assert collator.skips.counts["no teacher logits"] == len(rows) - len(have)


def test_collator_computes_teacher_inputs_with_the_teachers_extractor(shards, encoder):
    rows = list(stream(shards))[:3]
    teacher_extractor = DassFeatureExtractor(max_length=60, num_mel_bins=64)  # any other extractor
    collator = DassAudioCollator(
        tiny_extractor(), encoder, MAX_LENGTH, teacher_feature_extractor=teacher_extractor, freq_mask=48, time_mask=20
    )
    batch = collator(rows)
    assert batch["input_values"].shape == (3, MAX_LENGTH, 128)
    expected = teacher_extractor(
        [decode_audio(r["audio"]) for r in rows], sampling_rate=16000, return_tensors="pt", truncation=True
    )
    torch.testing.assert_close(batch["teacher_input_values"], expected["input_values"])  # the teacher's, unmasked
