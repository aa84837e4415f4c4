"""Fixtures of the web-app tests: a live server per module and small phantom files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.live_server import LiveServer

SMALL_PHANTOM_SHAPE = (96, 80, 48)
SMALL_PHANTOM_SPACING = (2.5, 2.5, 2.5)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> LiveServer:
    """A running server with an empty data folder, shared by the tests of one module."""
    live = LiveServer(tmp_path_factory.mktemp("server")).start()
    yield live
    live.close()


@pytest.fixture(scope="session")
def small_phantom_files(tmp_path_factory) -> tuple[Path, Path]:
    """(image, organ labels) NIfTI files of a small phantom (fast to segment on a CPU)."""
    from syntumor_core.phantom import make_phantom
    from syntumor_core.volume import save_nifti

    folder = tmp_path_factory.mktemp("phantom")
    phantom = make_phantom(seed=3, shape=SMALL_PHANTOM_SHAPE, spacing=SMALL_PHANTOM_SPACING)
    image = save_nifti(phantom.image, folder / "phantom_ct.nii.gz")
    labels = save_nifti(phantom.labels, folder / "phantom_organs.nii.gz")
    return image, labels
