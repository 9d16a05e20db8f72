"""`dass demo`: a Gradio page and API that tag a recording of any length and draw its timeline.

- `analysis`: what the page shows, computed by the functions of `dass classify` and `dass timeline` (no gradio);
- `live_tab`: the Live tab's handlers: the browser's microphone, chunk by chunk, through `live.LiveDetector` (no
  gradio);
- `page`: the Gradio app (upload or microphone, examples, labels, timeline, segments; the Live tab; the `/classify`
  API).

Gradio is an optional extra: `pip install "transformers-dass[demo]"`.
"""

from __future__ import annotations

from ..utils.optional import install_hint, require

DEMO_HINT = install_hint("demo")


def require_gradio():
    """The `gradio` module, or an ImportError naming the extra that installs it."""
    return require("gradio", "demo", "the DASS demo page")


def add_demo_command(commands, model_help: str) -> None:
    """Add `dass demo [--model DIR] [--host H] [--port P]` to the `dass` subcommands."""
    demo = commands.add_parser(
        "demo", help="A web page and API (Gradio) that tag a recording and draw its timeline, or listen live."
    )
    demo.add_argument("--model", help=model_help)
    demo.add_argument("--host", default="127.0.0.1", help="Address to serve on (default 127.0.0.1: this machine only).")
    demo.add_argument("--port", type=int, default=7860, help="Port (default 7860).")
    demo.set_defaults(handler=_demo_command)


def _demo_command(args) -> int:
    try:
        require_gradio()
    except ImportError as error:
        raise SystemExit(f"dass demo: error: {error}") from None
    from .page import serve

    serve(args.model, args.host, args.port)
    return 0


__all__ = ["DEMO_HINT", "add_demo_command", "require_gradio"]
