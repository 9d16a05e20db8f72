"""A `dass demo` server for the web app tests: the bundled demo model, 127.0.0.1 on a free port, stopped after."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCENE = EXAMPLES / "scene_siren_three.wav"


def free_port() -> int:
    """A port nobody listens on now (the OS picks it; the server binds it right after)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_demo(max_file_mb: float | None = None):
    """Yield (url, app) of a launched demo; close the server however the test ends."""
    pytest.importorskip("gradio", reason='the web app needs gradio: pip install -e ".[demo]" (in the dev extra)')
    from transformers_dass.webapp.analysis import MAX_FILE_MB
    from transformers_dass.webapp.page import serve

    app = serve(
        host="127.0.0.1",
        port=free_port(),
        max_file_mb=max_file_mb or MAX_FILE_MB,
        examples_dir=EXAMPLES,
        block=False,
    )
    try:
        yield app.local_url, app
    finally:
        app.close()
