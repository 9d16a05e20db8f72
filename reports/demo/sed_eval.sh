#!/usr/bin/env bash
# The SED numbers of reports/demo/README.md ("Say when"): a model's PSDS1, PSDS2 and collar F1 on held-out scenes
# of the demo generator (test voices and rates, 1-3 events, the real babble recording or near-silence), on the
# 48-scene set of seed 0, on four more draws (seeds 6, 7, 8 with 48 scenes, seed 5 with 240), and the perfect-label
# ceilings of the 240-scene set.
#   usage: reports/demo/sed_eval.sh MODEL OUT      (MODEL: a folder, e.g. src/transformers_dass/demo)
#   SETS: where the scene sets are made (kept between runs); BABBLE: the babble recording.
set -euo pipefail
MODEL=$1
OUT=$2
SETS=${SETS:-/work/sed_sets}
BABBLE=${BABBLE:-../shared/fixtures/babble_all.wav}
PY=${PY:-python}
mkdir -p "$OUT"
for spec in 0:48 6:48 7:48 8:48 5:240; do
  seed=${spec%:*}; scenes=${spec#*:}
  data="$SETS/seed${seed}_${scenes}"
  if [[ ! -f $data/eval_strong.tsv ]]; then
    $PY scripts/make_demo_dataset.py --output-dir "$data" --seed "$seed" --workers 2 --splits eval \
      --eval-scenes "$scenes" --eval-babble "$BABBLE" > "$OUT/make_seed${seed}_${scenes}.log" 2>&1
  fi
  extra=()
  [[ $scenes == 240 ]] && extra=(--ceilings)
  $PY scripts/evaluate_sed.py --data "$data" --split eval --model "$MODEL" --output-dir "$OUT/seed${seed}_${scenes}" \
    --clip-map "${extra[@]}" 2> "$OUT/seed${seed}_${scenes}.log" | grep -E "clips|model:|perfect"
done
