"""Realism reports as text and as a folder (JSON + plots) that the CLI writes and the page reads.

A report folder holds ``realism.json`` (``{"format": 1, "case": …, "reports": [RealismReport
.to_dict() + "plots"], …}``) and per profile ``histograms_<profile>.png`` and
``gallery_<profile>.png``. Plots of a licensed case (LiTS) are data derived from it: keep the
folder out of the repository.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

from syntumor_core.errors import VolumeError
from syntumor_core.realism.score import RealismReport

__all__ = ["REPORT_FILE", "format_table", "load_report_folder", "save_report_folder"]

logger = logging.getLogger(__name__)

REPORT_FILE = "realism.json"
FORMAT = 1
_DECIMALS = {"HU": 1, "ml": 2, "": 3}


def _number(value, unit: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{_DECIMALS.get(unit, 2)}f}"


def _p_value(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.2g}" if value < 0.01 else f"{value:.3f}"


def table_rows(report: dict) -> list[dict[str, str]]:
    """One row of display strings per statistic of a report (as ``RealismReport.to_dict()``)."""
    rows = []
    for item in report["comparisons"]:
        unit = item["unit"]
        real = (
            f"{_number(item['real_median'], unit)} "
            f"({_number(item['real_q1'], unit)}–{_number(item['real_q3'], unit)})"
        )
        synthetic = (
            f"{_number(item['synthetic_median'], unit)} "
            f"({_number(item['synthetic_q1'], unit)}–{_number(item['synthetic_q3'], unit)})"
        )
        rows.append(
            {
                "statistic": item["statistic"] + (f" ({unit})" if unit else ""),
                "real": real,
                "synthetic": synthetic,
                "ks_p": _p_value(item["ks_p"]),
                "n": f"{item['n_real']}/{item['n_synthetic']}",
            }
        )
    return rows


def reader_line(report: dict) -> str:
    """``machine reader AUC 0.61 [0.52, 0.70] (15 real, 66 synthetic)`` or why there is none."""
    reader = report.get("machine_reader")
    if not reader:
        return "machine reader: not run (fewer than 2 lesions in an arm)"
    return (
        f"machine reader AUC {reader['auc']:.2f} [{reader['low']:.2f}, {reader['high']:.2f}] "
        f"({reader['n_real']} real, {reader['n_synthetic']} synthetic, {reader['folds']}-fold)"
    )


def format_table(reports: Sequence[RealismReport | dict]) -> str:
    """The profile × statistic table (median (IQR) real vs synthetic, KS p, n) as plain text."""
    records = [r.to_dict() if isinstance(r, RealismReport) else r for r in reports]
    header = ("profile", "statistic", "real median (IQR)", "synthetic median (IQR)", "KS p", "n")
    lines: list[tuple[str, ...]] = [header]
    notes = []
    for record in records:
        for row in table_rows(record):
            lines.append(
                (
                    record["profile"],
                    row["statistic"],
                    row["real"],
                    row["synthetic"],
                    row["ks_p"],
                    row["n"],
                )
            )
        notes.append(f"{record['profile']}: {reader_line(record)}")
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in lines
    ]
    text.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join([*(t.rstrip() for t in text), "", *notes])


def save_report_folder(
    reports: Sequence[RealismReport], folder: Path, *, plots: bool = True, extra: dict | None = None
) -> Path:
    """Write ``realism.json`` (and the plots) into ``folder``; returns the JSON's path."""
    from syntumor_core.realism.plots import save_gallery, save_histograms

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for report in reports:
        record = report.to_dict()
        record["plots"] = {}
        if plots:
            histograms = save_histograms(report, folder / f"histograms_{report.profile}.png")
            gallery = save_gallery(report, folder / f"gallery_{report.profile}.png")
            record["plots"] = {"histograms": histograms.name, "gallery": gallery.name}
        records.append(record)
    document = {
        "format": FORMAT,
        "case": records[0]["case"] if records else None,
        **(extra or {}),
        "reports": records,
    }
    path = folder / REPORT_FILE
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(document, indent=1, allow_nan=False), encoding="utf-8")
    temporary.replace(path)
    logger.info("wrote %s", path)
    return path


def load_report_folder(folder: Path) -> dict | None:
    """The ``realism.json`` of ``folder``, or None when there is none.

    Raises:
        VolumeError: the file is not a realism report this code can read.
    """
    path = Path(folder) / REPORT_FILE
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise VolumeError(f"{path} is not readable JSON: {error}") from error
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise VolumeError(f"{path} is not a realism report of format {FORMAT}")
    return document
