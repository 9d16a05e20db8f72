"""The `dass demo` page as a Hugging Face Space (Gradio SDK): the same app, served on 0.0.0.0:7860.

Publish the demo of your own fine-tuned DASS: copy this folder to a new Space, put your model folder (what
`save_pretrained` or `dass convert` wrote: config.json, model.safetensors, preprocessor_config.json) beside this
file as `model/`, or set the Space variable `DASS_MODEL` to a folder or Hub id; add a few clips under
`examples/` if you like. Without either, the demo model bundled with transformers-dass is served.

Locally: `python space/app.py` (then open http://127.0.0.1:7860).
"""

import os
from pathlib import Path

from transformers_dass.webapp.page import EXAMPLES_DIR, serve

HERE = Path(__file__).resolve().parent


def model_dir() -> str | None:
    """$DASS_MODEL, else ./model beside this file, else None (the bundled demo model)."""
    if os.environ.get("DASS_MODEL"):
        return os.environ["DASS_MODEL"]
    return str(HERE / "model") if (HERE / "model" / "config.json").is_file() else None


if __name__ == "__main__":
    serve(
        model_dir(),
        host=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
        port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        examples_dir=HERE / "examples" if (HERE / "examples").is_dir() else EXAMPLES_DIR,
    )
