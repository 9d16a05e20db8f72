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
# Training on (the shipped demo model, and the teacher at equal data): labels only, from an earlier run's weights.
# $BIG = make_demo_dataset.py --output-dir $BIG --train-singles 8000 --train-scenes 0 --validation-singles 320
#        --validation-scenes 0 --splits train validation
# $SCENES = make_demo_dataset.py --output-dir $SCENES --seed 1 --train-singles 0 --train-scenes 1600
#        --validation-singles 0 --validation-scenes 120 --splits train validation
BIG=${BIG:-/work/demo_big}
SCENES=${SCENES:-/work/demo_scenes}
onward=(--distillation_loss none --labels_csv "$DATA/labels.csv" --do_train --do_eval
        --per_device_train_batch_size 16 --per_device_eval_batch_size 32 --lr_scheduler_type cosine
        --weight_decay 0.05 --mixup 0 --freqm 24 --seed 0
        --eval_strategy epoch --save_strategy epoch --logging_steps 25 --report_to none --use_cpu)
# The 8,000 single clips as 3.2 s inputs, milder time masking than above.
big_clips=(--train_files "$BIG/train-*.parquet" --eval_files "$BIG/validation-*.parquet" --max_length 320
           --num_train_epochs ${EPOCHS:-8} --learning_rate 5e-4 --warmup_steps 100 --timem 20)
# The shipped demo model, step 1: the KD student trained on with the 8,000 clips.
if [[ $stage == long ]]; then
  OMP_NUM_THREADS=${THREADS:-2} $PY scripts/train_dass.py --model_name_or_path "$RUNS/student_kd" \
    --output_dir "$RUNS/student_long" --save_total_limit 2 "${big_clips[@]}" "${onward[@]}"
fi
# Step 2: fine-tuned at the 10 s length that `dass classify` pads to, on the scenes (1-4 sounds at random offsets)
# and half of the single clips, so that one short sound in a long noisy clip is still found.
if [[ $stage == long10s ]]; then
  OMP_NUM_THREADS=${THREADS:-2} $PY scripts/train_dass.py --model_name_or_path "$RUNS/student_long" \
    --output_dir "$RUNS/student_long10s" --save_total_limit 1 \
    --train_files "$SCENES/train-*.parquet" "$BIG/train-00000-of-00002.parquet" \
    --eval_files "$SCENES/validation-*.parquet" "$BIG/validation-*.parquet" --max_length 1024 \
    --num_train_epochs ${EPOCHS:-2} --learning_rate 3e-4 --warmup_steps 50 --timem 48 "${onward[@]}"
fi
# The AST teacher trained on exactly like step 1, for the comparison with the shipped student at equal data.
if [[ $stage == teacher_long ]]; then
  OMP_NUM_THREADS=${THREADS:-2} $PY scripts/train_dass.py --model_name_or_path "$RUNS/ast_teacher" \
    --output_dir "$RUNS/ast_teacher_long" --save_total_limit 1 "${big_clips[@]}" "${onward[@]}"
fi
