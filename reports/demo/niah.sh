#!/usr/bin/env bash
# The demo NIAH sweep, exactly as run for reports/demo/README.md: the DASS students against the AST teacher,
# needles = the first 16 clips of the demo test split (1-3 s single-label clips as 3.2 s needles, the models' training length), haystacks of babble made from the dataset's own (held-out)
# speech and of white noise, 10 dB below the needle.
# AST stops at 150 s: at 300 s its 15k-token attention costs ~20 s per haystack on this 2-core CPU (and 4x that
# at 600 s), more than the whole DASS sweep; DASS runs to 600 s.
set -euo pipefail
DATA=${DATA:-/work/demo_data}
RUNS=${RUNS:-/work/runs}
OUT=${OUT:-reports/demo/niah}
PY=${PY:-python}
common=(--data_files "$DATA/test-*.parquet" --labels_csv "$DATA/labels.csv" --max_needles 16
        --needle_frames 320 --positions 0 0.5 1 --noise "$DATA/noise/babble_test.wav" white --snr_db 10 --seed 0
        --output_dir "$OUT" --disable_tqdm)
models=${MODELS:-"dass_student=$RUNS/student_nokd"}
ast=${AST:-"ast_teacher=$RUNS/ast_teacher"}
OMP_NUM_THREADS=${THREADS:-1} $PY scripts/run_niah.py --models $ast \
  --lengths_seconds 10 30 60 150 "${common[@]}"
OMP_NUM_THREADS=${THREADS:-1} $PY scripts/run_niah.py --models $models \
  --lengths_seconds 10 30 60 150 300 600 "${common[@]}"
