#!/usr/bin/env bash
# The demo run, exactly as it was run for reports/demo/README.md (CPU, no network).
#   DATA: output of scripts/make_demo_dataset.py; RUNS: where models go; INIT: config-only model folders
#   written by reports/demo/make_init_configs.py (random initialisation).
set -euo pipefail
DATA=${DATA:-/work/demo_data}
RUNS=${RUNS:-/work/runs}
INIT=${INIT:-$RUNS/init}
PY=${PY:-python}

# Single-label clips only (reports/demo/select_clips.py), as 3.2 s inputs: a 2-core CPU gets through enough steps.
common=(--train_files "$DATA/train-single.parquet" --eval_files "$DATA/validation-single.parquet"
        --labels_csv "$DATA/labels.csv" --max_length 320 --do_train --do_eval
        --num_train_epochs 8 --per_device_train_batch_size 16 --per_device_eval_batch_size 16
        --lr_scheduler_type cosine --warmup_steps 40 --weight_decay 0.05
        --mixup 0 --freqm 24 --timem 40 --seed 0
        --eval_strategy epoch --save_strategy no --logging_steps 10 --report_to none --use_cpu)

stage=${1:-all}
if [[ $stage == data || $stage == all ]]; then
  for split in train validation; do
    $PY reports/demo/select_clips.py --data "$DATA" --split $split --kind single --output "$DATA/$split-single.parquet"
  done
fi
if [[ $stage == teacher || $stage == all ]]; then
  OMP_NUM_THREADS=${THREADS:-2} $PY scripts/train_dass.py --model_name_or_path "$INIT/ast_teacher" \
    --output_dir "$RUNS/ast_teacher" --learning_rate 5e-4 --distillation_loss none "${common[@]}"
fi
if [[ $stage == student || $stage == all ]]; then
  OMP_NUM_THREADS=${THREADS:-2} $PY scripts/train_dass.py --model_name_or_path "$INIT/student" \
    --output_dir "$RUNS/student_nokd" --learning_rate 1e-3 --distillation_loss none "${common[@]}"
fi
if [[ $stage == kd || $stage == all ]]; then
  OMP_NUM_THREADS=${THREADS:-2} $PY scripts/train_dass.py --model_name_or_path "$INIT/student" \
    --teacher_model_name_or_path "$RUNS/ast_teacher" \
    --output_dir "$RUNS/student_kd" --learning_rate 1e-3 \
    --distillation_loss kldiv --distillation_weight 0.5 --distillation_temperature 1.0 "${common[@]}"
fi
