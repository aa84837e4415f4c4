"""Where the published realism report lives, and reading it for the ``/realism`` page.

``syntumor realism --publish`` writes the report folder (``realism.json`` and its PNGs, see
:mod:`syntumor_core.realism.report`) to ``<data_dir>/realism``; the page shows what is there.
Scoring is not a web job: it takes seconds to minutes of CPU, is run rarely, by an admin, and
needs the LiTS sample installed on the machine, so the command line is the honest place for it.
"""

from __future__ import annotations

import re
from pathlib import Path

REALISM_DIR_NAME = "realism"
PLOT_NAME = re.compile(r"^(histograms|gallery)_[a-z0-9_-]{1,40}\.png$")


def realism_folder(data_dir: Path) -> Path:
    """The folder of the published realism report."""
    return Path(data_dir) / REALISM_DIR_NAME


def latest_report(data_dir: Path) -> dict | None:
    """The published report (``realism.json``), or None when none was published.

    Raises:
        syntumor_core.errors.VolumeError: the file exists but is not a readable report.
    """
    from syntumor_core.realism.report import load_report_folder

    return load_report_folder(realism_folder(data_dir))


def plot_path(data_dir: Path, name: str) -> Path | None:
    """The path of a published plot, or None for a name that is not one (no path tricks)."""
    if not PLOT_NAME.match(name):
        return None
    path = realism_folder(data_dir) / name
    return path if path.is_file() else None
