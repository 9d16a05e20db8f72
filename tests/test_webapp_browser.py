"""The `dass demo` page in a real headless Chromium (Debian's `chromium`, driven by Playwright): upload an example,
wait for the result, check the labels, the timeline image and the segments; click an example; upload a non-audio
file and see its message. The Live tab listens to Chromium's fake microphone, which plays the example scene (and
loops it): a siren starts, and stopping the recording ends it. The page loads nothing from outside this machine.
Screenshots are saved in the tests' temporary folders."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from urllib.parse import urlparse

import pytest

from .webapp_server import SCENE, running_demo

sync_api = pytest.importorskip("playwright.sync_api", reason='the browser test needs playwright: pip install -e ".[dev]"')


def chromium_path() -> str | None:
    """A Chromium the tests can drive: $DASS_CHROMIUM, else Debian's `chromium` (apt-get install chromium)."""
    return os.environ.get("DASS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


WAIT_MS = 120_000  # the first result: model run plus page updates, well under this on any CPU; a hang fails
# The live siren: it starts 1.5 s into the looped scene, reported after the next 1 s window; under 10 s on any CPU.
LIVE_WAIT_MS = 90_000


@pytest.fixture(scope="module")
def playwright():
    """Playwright, with the Chromium it drives (skips when there is none); one per module (it allows one)."""
    path = chromium_path()
    if path is None:
        pytest.skip("no chromium to drive: apt-get install chromium (.ci/run installs it) or set DASS_CHROMIUM")
    with sync_api.sync_playwright() as playwright:
        playwright.chromium_path = path
        yield playwright


@contextlib.contextmanager
def launched_chromium(playwright, *args: str):
    """A headless Chromium launched with `args`, closed after."""
    browser = playwright.chromium.launch(executable_path=playwright.chromium_path, headless=True, args=list(args))
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="module")
def browser(playwright):
    with launched_chromium(playwright) as browser:
        yield browser


def only_local(page, outside: list[str]) -> None:
    """Let the page load from this machine only; what it asks of anywhere else is aborted and listed in `outside`."""

    def route(route):
        host = urlparse(route.request.url).hostname
        if route.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
            return route.continue_()
        outside.append(route.request.url)
        return route.abort()

    page.route("**/*", route)


def test_page_tags_an_uploaded_example_and_draws_its_timeline(browser, tmp_path):
    with running_demo() as (url, _):
        outside = []
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(WAIT_MS)
        only_local(page, outside)
        page.goto(url, wait_until="load")
        audio = page.locator("#dass-audio")
        audio.locator("input[type=file]").first.set_input_files(str(SCENE))

        labels = page.locator("#dass-labels")
        labels.get_by_text("siren", exact=True).first.wait_for()
        summary = page.locator("#dass-summary")
        summary.get_by_text(SCENE.name).first.wait_for()
        top = labels.locator("[data-testid=label-output-value]").inner_text()
        best = labels.locator("dt").all_inner_texts()  # the best five, with their scores beside them
        assert top in ("siren", "three") and set(best[:2]) == {"siren", "three"}, (top, best)

        image = page.locator("#dass-timeline img").first
        image.wait_for()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
        width, height = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
        assert width >= 600 and height >= 200, (width, height)  # plot_timeline's figure: 1200 px wide

        table = page.locator("#dass-segments")
        table.get_by_text("three", exact=True).first.wait_for()
        text = table.inner_text()
        # the labels with their times (where the sounds are is tested on `dass timeline`'s rows: test_demo_model)
        assert "siren" in text and re.search(r"\b[0-9]\.[0-9]{2}\b", text), text

        page.screenshot(path=str(tmp_path / "demo_page.png"), full_page=True)
        assert (tmp_path / "demo_page.png").stat().st_size > 10_000

        page.get_by_text("seven_in_babble.wav", exact=True).first.click()  # an example, one click away
        summary.get_by_text("seven_in_babble.wav").first.wait_for()
        assert labels.locator("[data-testid=label-output-value]").inner_text() == "seven"

        not_audio = tmp_path / "notes.wav"
        not_audio.write_text("not audio\n" * 20)
        audio.get_by_role("button", name="Clear").click()
        audio.locator("input[type=file]").first.set_input_files(str(not_audio))
        page.get_by_text("notes.wav is not an audio file").first.wait_for()  # a message in the page, not a crash
        assert outside == [], f"the page fetched from outside this machine: {outside}"
        page.close()


def test_live_tab_reports_a_siren_from_the_microphone_and_ends_it_on_stop(playwright, tmp_path):
    # Chromium's fake microphone plays the 16 kHz mono scene as it is (resampled to its capture rate) and loops it.
    fake_microphone = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                       f"--use-file-for-fake-audio-capture={SCENE}")  # fmt: skip
    with launched_chromium(playwright, *fake_microphone) as chromium, running_demo() as (url, _):
        outside = []
        context = chromium.new_context(permissions=["microphone"], viewport={"width": 1280, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(LIVE_WAIT_MS)
        only_local(page, outside)
        page.goto(url, wait_until="load")
        page.get_by_role("tab", name="Live").click()
        microphone = page.locator("#dass-live-audio")
        microphone.get_by_role("button", name="Record").click()

        events = page.locator("#dass-live-events")
        rows = events.locator("div[role=row]")  # the grid's rows (its <table> is a hidden copy for measuring)
        siren_start = rows.filter(has_text="start").filter(has_text="siren")
        siren_start.first.wait_for()
        assert re.search(r"\b00:00:[0-9]{2}\.[0-9]{2}\b", siren_start.first.inner_text())  # the time it started
        page.locator("#dass-live-status").get_by_text("listening").first.wait_for()
        microphone.get_by_role("button", name="Stop").click()

        page.locator("#dass-live-status").get_by_text("stopped").first.wait_for()
        rows.filter(has_text="end").filter(has_text="siren").first.wait_for()  # ended by itself or closed by the stop
        assert "(the recording has stopped)" in page.locator("#dass-live-now").inner_text()
        page.screenshot(path=str(tmp_path / "demo_live.png"), full_page=True)
        assert outside == [], f"the page fetched from outside this machine: {outside}"
        context.close()
