"""Convert a released DASS checkpoint (.pth or .safetensors) into a transformers model folder.

    python scripts/convert_original_checkpoint.py --checkpoint DASS_small.pth --output-dir dass-small \
        [--labels-csv class_labels_indices.csv]

Writes config.json, model.safetensors and preprocessor_config.json; the architecture (dims, depths, labels,
d_state, dt_rank) is read off the tensors. Same as `dass convert`.
"""

import sys

from transformers_dass.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
