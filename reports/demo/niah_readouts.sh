#!/usr/bin/env bash
# The clip-readout NIAH sweep of reports/demo/README.md, exactly as run: the shipped demo model, mean and max
# readouts scored from the same forward of each haystack, haystacks of 10 s to 2.5 h.
# Needles: 8 test-split clips, one per class (test-00000, -02, ..., -14: zero two four six eight siren knock whistle),
# cut or padded to 320 frames at the feature level. Protocols (babble is the goal):
#   babble: the needle's audio mixed into held-out babble (noise/babble_test.wav, test-split voices, looped) 10 dB
#           below it, each needle reading the background from its own offset (niah_mixing.MixedHaystacks);
#   zeros:  the paper's protocol, the needle's features spliced into zeros of the normalised feature space;
#   white:  as babble, white noise.
# Positions 0, 0.5, 1 up to 600 s, 0.5 only at 1 h and 2.5 h (--long_*). Resumable: rerun to finish.
# The demo model's forward costs about 7 ms per second of audio on an idle 2-core CPU (measured at 600 s): ~65 s at 2.5 h.
set -euo pipefail
DATA=${DATA:-/work/demo_data}   # scripts/make_demo_dataset.py --output-dir $DATA (the test split is enough)
OUT=${OUT:-reports/demo/niah_readouts}   # one folder per protocol under it
MODEL=${MODEL:-src/transformers_dass/demo}
PY=${PY:-python}
$PY - "$DATA" <<'PYEOF'
import sys

import datasets

data = sys.argv[1]
clips = datasets.load_dataset("parquet", data_files=f"{data}/test-*.parquet", split="train")
wanted = {f"test-{i:05d}" for i in range(0, 16, 2)}
needles = clips.filter(lambda video_id: video_id in wanted, input_columns="video_id").sort("video_id")
needles.to_parquet(f"{data}/niah_needles8.parquet")
PYEOF
common=(--models "dass_demo=$MODEL" --data_files "$DATA/niah_needles8.parquet" --labels_csv "$DATA/labels.csv"
        --needle_frames 320 --positions 0 0.5 1 --long_seconds 3600 --long_positions 0.5 --clip_pooling mean max
        --seed 0 --batch_size 8 --disable_tqdm)
run() { OMP_NUM_THREADS=${THREADS:-1} $PY scripts/run_niah.py "${common[@]}" --output_dir "$OUT/$1" "${@:2}"; }
# One folder per protocol, so that they can run side by side. As run for the report (a 2-core CPU shared with other
# jobs): every length with the same 8 needles.
run babble --noise "$DATA/noise/babble_test.wav" --snr_db 10 --haystack_level waveform \
    --lengths_seconds ${LENGTHS:-10 60 600 3600 9000} &
run zeros --noise zeros --haystack_level features --lengths_seconds ${LENGTHS:-10 60 600 3600 9000} &
run white --noise white --snr_db 10 --haystack_level waveform --lengths_seconds ${LENGTHS:-10 60 600 3600 9000} &
wait
$PY reports/demo/readout_table.py "$OUT"/*/results.json --plot "$OUT/niah.png"
