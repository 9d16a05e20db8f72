#!/usr/bin/env python
"""docs/demo_page.png: the `dass demo` page (bundled model) after uploading examples/scene_siren_three.wav.

Needs the [demo] extra, playwright and a Chromium (Debian's: `apt-get install chromium`; playwright downloads none):

    python reports/demo/screenshot_demo_page.py --output docs/demo_page.png
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
from pathlib import Path

from playwright.sync_api import sync_playwright

from transformers_dass.webapp.page import serve

ROOT = Path(__file__).resolve().parents[2]
SCENE = ROOT / "examples" / "scene_siren_three.wav"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "demo_page.png")
    parser.add_argument("--chromium", default=os.environ.get("DASS_CHROMIUM") or shutil.which("chromium"))
    args = parser.parse_args()
    if not args.chromium:
        raise SystemExit("no chromium: apt-get install chromium, or pass --chromium PATH")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = serve(host="127.0.0.1", port=port, examples_dir=ROOT / "examples", block=False)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(app.local_url, wait_until="load")
            page.locator("#dass-audio input[type=file]").first.set_input_files(str(SCENE))
            page.locator("#dass-summary").get_by_text(SCENE.name).first.wait_for()
            image = page.locator("#dass-timeline img").first
            image.wait_for()
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
            page.screenshot(path=str(args.output), full_page=True)
            browser.close()
    finally:
        app.close()
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
