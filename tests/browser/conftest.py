"""Browser tests: Playwright driving Debian's Chromium against a live server.

Chromium comes from the Debian package (``.ci/run`` installs it); Playwright never downloads a
browser. Screenshots go to ``tests/artifacts/`` (ignored by git, kept by CI as artifacts).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.live_server import LiveServer

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = os.environ.get("SYNTUMOR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--headless",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    yield tab
    context.close()


@pytest.fixture(scope="module")
def web_server(tmp_path_factory) -> LiveServer:
    """A running server for one test module (empty data folder)."""
    live = LiveServer(tmp_path_factory.mktemp("web")).start()
    yield live
    live.close()


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot under tests/artifacts/ and return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(page, server: LiveServer, username: str, password: str) -> None:
    page.goto(f"{server.url}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)


# --- fixtures of the main-page tests (upload, viewer, segment, synthesize) ----------------------

PHANTOM_SHAPE = (96, 80, 48)
PHANTOM_SPACING_MM = (2.5, 2.5, 2.5)


@pytest.fixture(scope="session")
def phantom_files(tmp_path_factory) -> tuple[Path, Path]:
    """(CT, organ labels) NIfTI files of a small phantom (the demo model segments it in ~15 s)."""
    from syntumor_core.phantom import make_phantom
    from syntumor_core.volume import save_nifti

    folder = tmp_path_factory.mktemp("browser-phantom")
    phantom = make_phantom(seed=3, shape=PHANTOM_SHAPE, spacing=PHANTOM_SPACING_MM)
    image = save_nifti(phantom.image, folder / "phantom_ct.nii.gz")
    labels = save_nifti(phantom.labels, folder / "phantom_organs.nii.gz")
    return image, labels


def canvas_pixels(locator):
    """The rendered pixels of an element (a NiiVue canvas) as an RGB array (height, width, 3)."""
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("RGB"))


def non_background_fraction(pixels, background=(0, 0, 0), tolerance=12) -> float:
    """Share of pixels that differ from the background colour by more than ``tolerance``."""
    import numpy as np

    distance = np.abs(pixels.astype(int) - np.array(background)).max(axis=-1)
    return float((distance > tolerance).mean())


def changed_fraction(before, after, tolerance=12) -> float:
    """Share of pixels that differ between two renderings of the same size."""
    import numpy as np

    assert before.shape == after.shape, (before.shape, after.shape)
    return float((np.abs(before.astype(int) - after.astype(int)).max(axis=-1) > tolerance).mean())
