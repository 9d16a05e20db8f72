#!/usr/bin/env python
"""Train or fine-tune DASS with `Trainer`, optionally distilling from a teacher.

Fine-tune on your own labelled audio (a local audiofolder, parquet shards or any `datasets` dataset with an
audio and a label column), or reproduce DASS on AudioSet by streaming the Hub dataset and distilling from an AST
teacher, an ensemble of teachers, or teacher logits computed beforehand (scripts/precompute_teacher_logits.py).
See docs/training.md for the recipes and multi-GPU launches. With `--strong_labels_files` (AudioSet-strong's
tsv) the student is a `DassForAudioFrameClassification` and the clips the table annotates train per step, the others
through the clip readout (`--clip_pooling`).

    python scripts/train_dass.py --model_name_or_path small --labels_csv class_labels_indices.csv \
        --dataset_name agkphysics/AudioSet --dataset_config_name balanced --streaming \
        --teacher_model_name_or_path MIT/ast-finetuned-audioset-10-10-0.4593 \
        --output_dir dass-small-as20k --max_steps 20000 --per_device_train_batch_size 12 --learning_rate 1e-4
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field

import datasets
import transformers
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForAudioClassification,
    AutoModelForAudioFrameClassification,
    HfArgumentParser,
    set_seed,
)

from transformers_dass import DassConfig, DassFeatureExtractor, DassForAudioClassification, DassForAudioFrameClassification
from transformers_dass.model.readout import CLIP_POOLING_CHOICES
from transformers_dass.training.data import (
    ClassBalancedRepeat,
    DassAudioCollator,
    LabelEncoder,
    StrongLabelTable,
    TeacherLogitsTable,
    class_balanced_stream,
    class_label_names,
    count_labels,
    load_audio_dataset,
    load_label_counts,
    save_label_counts,
)
from transformers_dass.training.distillation import (
    DassDistillationTrainer,
    DistillationTrainingArguments,
    average_checkpoints,
    select_checkpoints,
)
from transformers_dass.training.metrics import compute_tagging_metrics

logger = logging.getLogger(__name__)

# Names accepted by --model_name_or_path that build a randomly initialised model of that size.
RANDOM_INIT_SIZES = {"small": DassConfig.small, "medium": DassConfig.medium}


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        metadata={
            "help": "A converted DASS folder or Hub id, a folder with only a config.json (random weights), or "
            "'small' / 'medium' for a randomly initialised DASS of that size."
        }
    )
    teacher_model_name_or_path: list[str] | None = field(
        default=None,
        metadata={"help": "Teacher(s) with logits over the same labels (AST, DASS, ...); several = an ensemble."},
    )
    teacher_feature_extractor: str = field(
        default="student",
        metadata={
            "help": "'student': the teacher reads the student's features (AST and DASS share the same fbank); "
            "'own': compute the teacher's inputs with the first teacher's own feature extractor.",
            "choices": ["student", "own"],
        },
    )
    teacher_per_step: bool = field(
        default=False,
        metadata={
            "help": "Load the teacher(s) as DassForAudioFrameClassification and distil per step (DASS teachers only; "
            "the student then is a frame model too)."
        },
    )
    clip_pooling: str | None = field(
        default=None,
        metadata={
            "help": "The student's clip readout (config.clip_pooling), which weak clips train through: linear_softmax "
            "or attention (a new head) let clip labels localise; default: the model's own.",
            "choices": list(CLIP_POOLING_CHOICES),
        },
    )
    frame_skip_stages: list[int] | None = field(
        default=None,
        metadata={
            "help": "Give the student's frame model heads on these earlier stages (config.frame_skip_stages, e.g. 1 2: "
            "0.08 s and 0.16 s steps) that refine its steps below the last stage's 0.32 s; new heads start at zero.",
        },
    )
    drop_path_rate: float | None = field(default=None, metadata={"help": "Override the student's stochastic depth."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where Hub models and datasets are cached."})
    token: str | None = field(default=None, metadata={"help": "Hub token for private models or datasets."})


@dataclass
class DataArguments:
    dataset_name: str | None = field(
        default=None, metadata={"help": "Hub dataset (e.g. agkphysics/AudioSet) or builder (e.g. audiofolder)."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "e.g. balanced, unbalanced, full."})
    data_dir: str | None = field(default=None, metadata={"help": "Folder for builders such as audiofolder."})
    train_split_name: str = field(default="train")
    eval_split_name: str | None = field(default=None, metadata={"help": "Split to evaluate on (mAP, mAUC)."})
    train_files: list[str] | None = field(default=None, metadata={"help": "Parquet shards (globs) to train on."})
    eval_files: list[str] | None = field(default=None, metadata={"help": "Parquet shards (globs) to evaluate on."})
    streaming: bool = field(default=False, metadata={"help": "Stream the data instead of downloading it first."})
    audio_column_name: str = field(default="audio")
    label_column_name: str = field(default="labels")
    id_column_name: str = field(default="video_id", metadata={"help": "Clip id: named in warnings, teacher key."})
    labels_csv: str | None = field(
        default=None, metadata={"help": "AudioSet-style index,mid,display_name CSV giving the label vocabulary."}
    )
    max_length: int = field(default=1024, metadata={"help": "Frames per clip (10 ms each); 1024 = 10 s."})
    teacher_logits_column: str | None = field(
        default=None, metadata={"help": "Column of precomputed teacher logits in the training data."}
    )
    teacher_logits_files: list[str] | None = field(
        default=None, metadata={"help": "Parquet shards of precomputed logits keyed by --id_column_name."}
    )
    strong_labels_files: list[str] | None = field(
        default=None,
        metadata={
            "help": "AudioSet-strong tsv tables (segment_id, start_time_seconds, end_time_seconds, label): the clips "
            "they annotate train per step; the student is loaded as DassForAudioFrameClassification."
        },
    )
    strong_labels_match: str = field(
        default="video_id",
        metadata={
            "help": "How a segment id (YTID_STARTMS) matches --id_column_name: video_id drops the _STARTMS suffix, "
            "segment_id keeps it whole.",
            "choices": ["video_id", "segment_id"],
        },
    )
    mixup: float = field(default=0.5, metadata={"help": "Probability of mixing a training clip with another."})
    mixup_alpha: float = field(default=10.0, metadata={"help": "Beta(alpha, alpha) mixing weights."})
    freqm: int = field(default=48, metadata={"help": "SpecAugment frequency mask parameter (bins), 0 = off."})
    timem: int = field(default=192, metadata={"help": "SpecAugment time mask parameter (frames), 0 = off."})
    shuffle_buffer_size: int = field(default=1000, metadata={"help": "Shuffle buffer of streamed data (clips)."})
    shuffle_input_shards: int = field(
        default=10, metadata={"help": "Shards that feed the streaming shuffle buffer at a time."}
    )
    class_balanced: bool = field(
        default=False, metadata={"help": "Class-balanced sampling as the original weights the unbalanced set."}
    )
    label_counts_file: str | None = field(
        default=None, metadata={"help": "JSON of label counts for --class_balanced (computed and saved if absent)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on at most this many clips."})
    dataset_cache_dir: str | None = field(default=None, metadata={"help": "Arrow cache for teacher logits tables."})


@dataclass
class AveragingArguments:
    weight_averaging_start: float | None = field(
        default=None, metadata={"help": "Average the checkpoints from this step/epoch (the original: epoch 6)..."}
    )
    weight_averaging_end: float | None = field(default=None, metadata={"help": "...to this one, inclusive."})
    weight_averaging_unit: str = field(default="epoch", metadata={"choices": ["epoch", "step"]})


def build_student(model_args: ModelArguments, encoder: LabelEncoder | None, per_step: bool = False):
    """(student model, its feature extractor, label encoder) with the head matching the label vocabulary; a
    `DassForAudioFrameClassification` (the same weights) when it trains `per_step`."""
    path = model_args.model_name_or_path
    hub = {"cache_dir": model_args.cache_dir, "token": model_args.token}
    overrides = {} if model_args.drop_path_rate is None else {"drop_path_rate": model_args.drop_path_rate}
    if model_args.clip_pooling is not None:
        overrides["clip_pooling"] = model_args.clip_pooling
    if model_args.frame_skip_stages is not None:
        overrides["frame_skip_stages"] = model_args.frame_skip_stages
    auto_class = AutoModelForAudioFrameClassification if per_step else AutoModelForAudioClassification
    if path in RANDOM_INIT_SIZES:
        if encoder is None:
            raise ValueError(f"--model_name_or_path {path} has no labels: give --labels_csv")
        config = RANDOM_INIT_SIZES[path](**_label_kwargs(encoder), **overrides, problem_type="multi_label_classification")
        model_class = DassForAudioFrameClassification if per_step else DassForAudioClassification
        return model_class(config), DassFeatureExtractor(), encoder

    config = AutoConfig.from_pretrained(path, **hub)
    encoder = encoder or LabelEncoder.from_config(config)
    relabel = not encoder.same_vocabulary(config)
    if relabel:
        logger.warning(
            f"the model's {config.num_labels} labels differ from the {encoder.num_labels} of the data; the "
            "classifier head is re-initialised for the new labels"
        )
    kwargs = {**overrides, **(_label_kwargs(encoder) if relabel else {})}
    if _has_weights(path, hub):
        model = auto_class.from_pretrained(path, ignore_mismatched_sizes=relabel, **kwargs, **hub)
    else:
        logger.warning(f"{path} has a config but no weights: training from random initialisation")
        for key, value in kwargs.items():
            setattr(config, key, value)
        model = auto_class.from_config(config)
    try:
        extractor = AutoFeatureExtractor.from_pretrained(path, **hub)
    except OSError:
        extractor = DassFeatureExtractor()
    if model.config.problem_type is None:  # the collator's targets are multi-hot: say so in the saved config
        model.config.problem_type = "multi_label_classification"
    return model, extractor, encoder


def _label_kwargs(encoder: LabelEncoder) -> dict:
    return {
        "num_labels": encoder.num_labels,
        "id2label": dict(enumerate(encoder.names)),
        "label2id": {name: i for i, name in enumerate(encoder.names)},
        "label_mids": encoder.mids,
    }


def _has_weights(path: str, hub: dict) -> bool:
    if os.path.isdir(path):
        return any(os.path.exists(os.path.join(path, name)) for name in ("model.safetensors", "pytorch_model.bin"))
    return True  # a Hub id: from_pretrained says so if it has no weights


def load_split(data_args: DataArguments, model_args: ModelArguments, split: str | None, files):
    if files is None and (data_args.dataset_name is None or split is None):
        return None
    return load_audio_dataset(
        dataset_name=None if files else data_args.dataset_name,
        dataset_config_name=data_args.dataset_config_name,
        split=split or "train",
        data_files=files,
        data_dir=data_args.data_dir,
        streaming=data_args.streaming,
        audio_column=data_args.audio_column_name,
        cache_dir=model_args.cache_dir,
        token=model_args.token,
    )


def label_counts(data_args, model_args, encoder, output_dir):
    """Clips per label of the training split, read from --label_counts_file or counted (and saved there)."""
    path = data_args.label_counts_file or os.path.join(output_dir, "label_counts.json")
    if os.path.exists(path):
        return load_label_counts(path, encoder)
    logger.info("counting labels over the training split for class-balanced sampling (labels column only)")
    labels_only = load_audio_dataset(
        dataset_name=None if data_args.train_files else data_args.dataset_name,
        dataset_config_name=data_args.dataset_config_name,
        split=data_args.train_split_name,
        data_files=data_args.train_files,
        data_dir=data_args.data_dir,
        streaming=True,
        columns=[data_args.label_column_name],
        cache_dir=model_args.cache_dir,
        token=model_args.token,
    )
    counts, clips = count_labels((row[data_args.label_column_name] for row in labels_only), encoder)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_label_counts(path, counts, clips, encoder)
    return counts, clips


def build_teacher(model_args: ModelArguments):
    """(teacher model or list of them, teacher feature extractor or None)."""
    if not model_args.teacher_model_name_or_path:
        return None, None
    hub = {"cache_dir": model_args.cache_dir, "token": model_args.token}
    auto_class = AutoModelForAudioFrameClassification if model_args.teacher_per_step else AutoModelForAudioClassification
    teachers = [auto_class.from_pretrained(p, **hub) for p in model_args.teacher_model_name_or_path]
    extractor = None
    if model_args.teacher_feature_extractor == "own":
        extractor = AutoFeatureExtractor.from_pretrained(model_args.teacher_model_name_or_path[0], **hub)
    return (teachers[0] if len(teachers) == 1 else teachers), extractor


def average_into(trainer, output_dir: str, averaging: AveragingArguments) -> None:
    """Load into the trainer's model the mean of the checkpoints in the averaging range."""
    folders = select_checkpoints(
        output_dir, averaging.weight_averaging_start, averaging.weight_averaging_end, averaging.weight_averaging_unit
    )
    if not folders:
        logger.warning(
            f"no checkpoint in {output_dir} for {averaging.weight_averaging_unit}s "
            f"{averaging.weight_averaging_start}..{averaging.weight_averaging_end} (check --save_steps/"
            "--save_strategy and --save_total_limit); keeping the final weights"
        )
        return
    logger.info(f"averaging the weights of {[f.name for f in folders]}")
    trainer.model.load_state_dict(average_checkpoints(folders), strict=True)


def main(argv: list[str] | None = None):
    parser = HfArgumentParser((ModelArguments, DataArguments, DistillationTrainingArguments, AveragingArguments))
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and argv[0].endswith(".json"):
        model_args, data_args, training_args, averaging = parser.parse_json_file(os.path.abspath(argv[0]))
    else:
        model_args, data_args, training_args, averaging = parser.parse_args_into_dataclasses(argv)

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    for library in (datasets.utils.logging, transformers.utils.logging):
        library.set_verbosity(log_level)
    set_seed(training_args.seed)

    if data_args.teacher_logits_column and data_args.teacher_logits_files:
        raise ValueError("give --teacher_logits_column or --teacher_logits_files, not both")
    if (data_args.teacher_logits_column or data_args.teacher_logits_files) and model_args.teacher_model_name_or_path:
        raise ValueError("give a teacher model or precomputed teacher logits, not both")
    train_dataset = load_split(data_args, model_args, data_args.train_split_name, data_args.train_files)
    eval_dataset = load_split(data_args, model_args, data_args.eval_split_name, data_args.eval_files)
    if train_dataset is None and not training_args.do_eval:
        raise ValueError("nothing to train on: give --dataset_name or --train_files")

    encoder = LabelEncoder.from_csv(data_args.labels_csv) if data_args.labels_csv else None
    reference = train_dataset if train_dataset is not None else eval_dataset
    index_names = class_label_names(reference, data_args.label_column_name) if reference is not None else None
    if encoder is None and index_names is not None:
        encoder = LabelEncoder(index_names)  # e.g. audiofolder: the folder names are the classes
    per_step = bool(data_args.strong_labels_files) or model_args.teacher_per_step
    model, extractor, encoder = build_student(model_args, encoder, per_step)
    encoder.index_names = index_names
    extractor.max_length = data_args.max_length

    if data_args.class_balanced and train_dataset is not None:
        if training_args.max_steps <= 0:
            raise ValueError("class-balanced sampling streams the data: give --max_steps")
        with training_args.main_process_first(desc="counting labels"):  # rank 0 counts, the others read its file
            counts, clips = label_counts(data_args, model_args, encoder, training_args.output_dir)
        repeat = ClassBalancedRepeat(encoder, counts, clips, data_args.label_column_name, seed=training_args.seed)
        train_dataset = class_balanced_stream(
            train_dataset,
            repeat,
            buffer_size=data_args.shuffle_buffer_size,
            seed=training_args.seed,
            input_shards=data_args.shuffle_input_shards,
        )
    elif data_args.streaming and train_dataset is not None:
        if training_args.max_steps <= 0:
            raise ValueError("a streamed dataset has no length: give --max_steps")
        train_dataset = train_dataset.shuffle(
            seed=training_args.seed,
            buffer_size=data_args.shuffle_buffer_size,
            max_buffer_input_shards=data_args.shuffle_input_shards,
        )
    if eval_dataset is not None and data_args.max_eval_samples is not None:
        eval_dataset = (
            eval_dataset.take(data_args.max_eval_samples)
            if isinstance(eval_dataset, datasets.IterableDataset)
            else eval_dataset.select(range(min(data_args.max_eval_samples, len(eval_dataset))))
        )

    teacher, teacher_extractor = build_teacher(model_args)
    logits_table = None
    if data_args.teacher_logits_files:
        logits_table = TeacherLogitsTable(
            data_args.teacher_logits_files, key_column=data_args.id_column_name, cache_dir=data_args.dataset_cache_dir
        )
    strong_labels = None
    if data_args.strong_labels_files:
        strong_labels = StrongLabelTable(
            data_args.strong_labels_files,
            key_column=data_args.id_column_name,
            match=data_args.strong_labels_match,
            cache_dir=data_args.dataset_cache_dir,
        )
    collator = DassAudioCollator(
        feature_extractor=extractor,
        label_encoder=encoder,
        max_length=data_args.max_length,
        audio_column=data_args.audio_column_name,
        label_column=data_args.label_column_name,
        id_column=data_args.id_column_name,
        teacher_logits_column=data_args.teacher_logits_column,
        teacher_logits_table=logits_table,
        teacher_feature_extractor=teacher_extractor,
        mixup_rate=data_args.mixup,
        mixup_alpha=data_args.mixup_alpha,
        freq_mask=data_args.freqm,
        time_mask=data_args.timem,
        strong_labels=strong_labels,
        step_frames=model.config.fine_step_frames if strong_labels is not None else None,
    )
    if teacher is None and logits_table is None and not data_args.teacher_logits_column:
        if training_args.distillation_loss != "none":
            logger.warning("no teacher given: training on labels only (distillation_loss='none')")
            training_args.distillation_loss = "none"

    trainer = DassDistillationTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        processing_class=extractor,
        compute_metrics=compute_tagging_metrics if eval_dataset is not None else None,
        teacher_model=teacher,
    )

    if train_dataset is not None:
        resume = training_args.resume_from_checkpoint
        if isinstance(resume, str) and resume.lower() == "true":
            resume = True
        result = trainer.train(resume_from_checkpoint=resume)
        if averaging.weight_averaging_start is not None and averaging.weight_averaging_end is not None:
            average_into(trainer, training_args.output_dir, averaging)
        trainer.save_model()
        trainer.log_metrics("train", result.metrics)
        trainer.save_metrics("train", result.metrics)
        trainer.save_state()
        skipped = dict(collator.skips.counts)
        if skipped:
            logger.warning(f"clips skipped in the main process: {skipped}")
        if encoder.unknown_counts:
            logger.warning(f"labels outside the vocabulary: {dict(encoder.unknown_counts.most_common(20))}")

    metrics = {}
    if eval_dataset is not None:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)

    if training_args.push_to_hub:
        kwargs = {"finetuned_from": model_args.model_name_or_path, "tasks": "audio-classification"}
        if data_args.dataset_name:
            kwargs["dataset"] = data_args.dataset_name
        trainer.push_to_hub(**kwargs)
    return metrics


if __name__ == "__main__":
    main()
