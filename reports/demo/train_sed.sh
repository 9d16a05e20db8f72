#!/usr/bin/env bash
# Issue 25's training comparison, as it was run for reports/demo/README.md ("Say when"): the shipped demo model
# trained on for the same budget with weak labels (three clip readouts) or strong labels (per step, 40 ms).
#   DATA: scripts/make_demo_dataset.py --output-dir $DATA --seed 1 --splits train validation --train-singles 1600
#         --train-scenes 1600 --validation-singles 160 --validation-scenes 120   (events recorded: *_strong.tsv)
#   RUNS: where the models go.  STAGE: weak_mean | weak_linear_softmax | weak_attention | strong | mixed | all
set -euo pipefail
DATA=${DATA:-/work/data25/train}
RUNS=${RUNS:-/work/runs25}
INIT=${INIT:-src/transformers_dass/demo}
EPOCHS=${EPOCHS:-1}
PY=${PY:-python}
mkdir -p "$RUNS"
common=(--model_name_or_path "$INIT" --train_files "$DATA/train-*.parquet" --eval_files "$DATA/validation-*.parquet"
        --labels_csv "$DATA/labels.csv" --max_length 1024 --do_train --do_eval --distillation_loss none
        --num_train_epochs "$EPOCHS" --per_device_train_batch_size 16 --per_device_eval_batch_size 32
        --learning_rate 3e-4 --lr_scheduler_type cosine --warmup_steps 20 --weight_decay 0.05
        --mixup 0 --freqm 24 --timem 48 --seed 0 --eval_strategy no --save_strategy no --logging_steps 20
        --report_to none --use_cpu)
# The scenes' events only: the singles then train through the clip readout (weak), the scenes per step (strong).
scenes_only="$RUNS/scenes_strong.tsv"
$PY - "$DATA/train.jsonl" "$DATA/train_strong.tsv" "$scenes_only" <<'PYTHON'
import json, sys
scenes = {json.loads(line)["video_id"] for line in open(sys.argv[1]) if json.loads(line)["kind"] == "scene"}
with open(sys.argv[2]) as source, open(sys.argv[3], "w") as out:
    for number, line in enumerate(source):
        if number == 0 or line.split("\t", 1)[0] in scenes:
            out.write(line)
PYTHON
run() {  # name, extra arguments...
  local name=$1; shift
  if [[ $STAGE == "$name" || $STAGE == all ]]; then
    OMP_NUM_THREADS=${THREADS:-2} $PY scripts/train_dass.py --output_dir "$RUNS/${PREFIX:-}$name" "${common[@]}" "$@" ${EXTRA:-}
  fi
}
STAGE=${1:-all}
run mixed --strong_labels_files "$scenes_only" --strong_labels_match segment_id
run strong --strong_labels_files "$DATA/train_strong.tsv" --strong_labels_match segment_id
run weak_mean --clip_pooling mean
run weak_linear_softmax --clip_pooling linear_softmax
run weak_attention --clip_pooling attention
