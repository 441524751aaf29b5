"""The studio page in a real browser: Playwright drives Debian's chromium against a running studio.

The camera is a still clip, so the preview changes only when a setting
does: the test moves the intensity slider, clicks a preset, uploads a photo
and turns the effect off, and each time checks the state the page reads and
the preview it shows. The overlay page must be the video alone, and must
reopen the stream by itself when the studio restarts. With IPMCAM_STUDIO_SHOT=PATH it also saves a
screenshot of the whole page there (docs/studio.png is made that way).

Needs the playwright package and chromium (Debian: ``apt-get install -y
chromium``; `make test` installs it); skipped without them.
"""
from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from ipmcam.resources import DEMO_REFERENCE
from ipmcam.studio.cli import Studio
from tests.studio_support import running_studio, still_clip, wait_for

sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
CHROMIUM = os.environ.get("IPMCAM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install -y chromium)")
#: headless in a container: no sandbox, no GPU, and nothing that phones home
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SHOT = os.environ.get("IPMCAM_STUDIO_SHOT")


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    clip = still_clip(tmp_path_factory.mktemp("browser") / "still.avi")
    with running_studio(clip, "--preset", "bold-red-lip") as running:
        yield running


def until(page: Any, expression: str) -> None:
    """Wait until a JavaScript expression holds in the page.

    Asked through ``page.evaluate`` (DevTools, which the page's CSP allows):
    ``wait_for_function`` polls with ``eval`` inside the page, which the
    studio's ``script-src 'self'`` rightly refuses whenever the first check fails.
    """
    wait_for(lambda: page.evaluate(expression), what=expression)


@pytest.fixture()
def page(studio: Studio) -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 860})
        finally:
            browser.close()


def preview(page: Any) -> np.ndarray:
    """The preview as the page shows it (BGR)."""
    return cv2.imdecode(np.frombuffer(page.locator("#preview").screenshot(), np.uint8), cv2.IMREAD_COLOR)


def differs(a: np.ndarray, b: np.ndarray) -> bool:
    """More than a few hundred pixels changed clearly (makeup on a face, not JPEG noise)."""
    return int((np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2) > 30).sum()) > 200


def settled(page: Any, unlike: np.ndarray | None = None, timeout: float = 60.0) -> np.ndarray:
    """The preview once it no longer changes (and, when given, differs from ``unlike``)."""
    end = time.monotonic() + timeout
    last = preview(page)
    while time.monotonic() < end:
        time.sleep(0.4)
        shot = preview(page)
        if not differs(shot, last) and (unlike is None or differs(shot, unlike)):
            return shot
        last = shot
    raise AssertionError("the preview did not settle" + ("" if unlike is None else " on a changed picture"))


def test_page_steers_the_filter(page: Any, studio: Studio) -> None:
    base = f"http://127.0.0.1:{studio.port}"
    state = lambda: httpx.get(f"{base}/api/state", timeout=30).json()  # noqa: E731
    page.goto(base + "/", wait_until="domcontentloaded")
    until(page, "document.getElementById('preview').naturalWidth > 0")
    until(page, "document.querySelectorAll('#gallery button').length >= 7")
    sync_api.expect(page.locator("#reference")).to_have_text("preset bold-red-lip", timeout=30_000)
    sync_api.expect(page.locator("[data-stat=engine]")).to_have_text("classic", timeout=30_000)
    made_up = settled(page)

    page.focus("#intensity")  # the slider, moved with the keyboard: all the way down, then up
    page.keyboard.press("Home")
    sync_api.expect(page.locator("#intensity-value")).to_have_text("0.00")
    wait_for(lambda: state()["intensity"] == 0.0, what="intensity 0 in the state")
    bare = settled(page, unlike=made_up)
    page.keyboard.press("End")
    wait_for(lambda: state()["intensity"] == 1.0, what="intensity 1 in the state")
    assert not differs(settled(page, unlike=bare), made_up)

    page.locator("#gallery button[data-preset=smoky-eye]").click()
    wait_for(lambda: state()["reference"] == "preset smoky-eye", what="the preset in the state")
    sync_api.expect(page.locator("#gallery button[data-preset=smoky-eye]")).to_have_attribute("aria-pressed", "true")
    smoky = settled(page, unlike=made_up)

    page.set_input_files("#file", str(DEMO_REFERENCE))
    sync_api.expect(page.locator("#reference")).to_have_text(DEMO_REFERENCE.name, timeout=60_000)
    assert state()["reference"] == DEMO_REFERENCE.name
    uploaded = settled(page, unlike=smoky)

    page.locator("label", has_text="Makeup").click()
    wait_for(lambda: state()["enabled"] is False, what="the effect off in the state")
    assert not differs(settled(page, unlike=uploaded), bare)  # off shows the face as captured, like intensity 0
    page.locator("label", has_text="Makeup").click()
    wait_for(lambda: state()["enabled"] is True, what="the effect on again")

    if SHOT:
        settled(page, unlike=bare)
        sync_api.expect(page.locator("[data-stat=faces]")).to_have_text("1")
        page.screenshot(path=SHOT)


def test_bad_photo_is_reported_on_the_page(page: Any, studio: Studio, tmp_path: Path) -> None:
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), np.full((100, 100, 3), 128, np.uint8))
    page.goto(f"http://127.0.0.1:{studio.port}/", wait_until="domcontentloaded")
    page.set_input_files("#file", str(grey))
    sync_api.expect(page.locator("#status")).to_contain_text("cannot use grey.png: grey.png: no face found",
                                                              timeout=60_000)
    assert "error" in (page.locator("#status").get_attribute("class") or "")


def test_overlay_is_output_only_and_outlives_a_restart(page: Any, tmp_path: Path) -> None:
    clip = still_clip(tmp_path / "still.avi")
    with running_studio(clip, "--preset", "evening") as first:
        port = first.port
        page.goto(f"http://127.0.0.1:{port}/overlay", wait_until="domcontentloaded")
        until(page, "document.getElementById('stream').naturalWidth > 0")
        box = page.locator("#stream").bounding_box()
        assert (box["x"], box["y"], box["width"], box["height"]) == (0, 0, 1280, 860)  # full bleed
        assert page.locator("input, button, a").count() == 0
        wait_for(lambda: first.hub.viewers == 1, what="the overlay to watch the stream")
    with running_studio(clip, "--preset", "evening", "--port", str(port)) as second:  # the same address again
        wait_for(lambda: second.hub.viewers == 1, what="the overlay to reopen the stream by itself")
