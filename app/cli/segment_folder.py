"""``syntumor segment --image-dir DIR --out-dir OUT``: every NIfTI of a folder, one loaded model.

For each ``<case>.nii`` or ``<case>.nii.gz`` of ``DIR`` (sorted by name) the command writes
``OUT/<case>.nii.gz`` (labels), ``OUT/<case>.json`` (the sidecar) and ``OUT/<case>_lesions.csv``,
prints a line, and at the end a summary line and ``OUT/summary.csv``. A file that cannot be
segmented (unreadable, not 3-D, too large…) is reported and skipped; the others go on.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from app.cli.common import fail, progress_bar
from app.cli.segment_outputs import segment_file

if TYPE_CHECKING:
    from syntumor_core.segmentation import Predictor

NIFTI_SUFFIXES = (".nii.gz", ".nii")
SUMMARY_COLUMNS = ("case", "file", "status", "liver_ml", "tumors", "tumor_ml", "seconds", "error")


def case_name(path: Path) -> str:
    """The file's name without ``.nii`` or ``.nii.gz`` (any case)."""
    for suffix in NIFTI_SUFFIXES:
        if path.name.lower().endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem


def nifti_files(folder: Path) -> list[Path]:
    """The ``.nii``/``.nii.gz`` files of ``folder`` (not its subfolders, no hidden files)."""
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file()
        and not path.name.startswith(".")
        and path.name.lower().endswith(NIFTI_SUFFIXES)
    )


def check_folders(
    image_dir: Path | None, out_dir: Path | None, *, single: Sequence[Path | None]
) -> list[Path]:
    """The CT files of a folder run, after checking its options (one-line errors, exit 2).

    Args:
        image_dir: ``--image-dir``.
        out_dir: ``--out-dir`` (made when missing).
        single: ``--image``, ``--out-label`` and ``--lesions``, which a folder run refuses.
    """
    if any(option is not None for option in single):
        fail("--image-dir/--out-dir segment a folder: leave out --image, --out-label and --lesions")
    if image_dir is None or out_dir is None:
        fail("--image-dir and --out-dir go together")
    if not image_dir.is_dir():
        fail(f"--image-dir {image_dir} is not a folder")
    if out_dir.resolve() == image_dir.resolve():
        fail("--out-dir must not be --image-dir: the label maps would mix with the CTs")
    files = nifti_files(image_dir)
    if not files:
        fail(f"no .nii or .nii.gz files in {image_dir}")
    names = [case_name(path) for path in files]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        fail(f"{image_dir}: two files would write the same outputs: {twice[0]}.nii and "
             f"{twice[0]}.nii.gz; move one away")  # fmt: skip
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fail(f"--out-dir {out_dir} cannot be made: {error.strerror or error}")
    return files


def segment_folder(
    predictor: Predictor, files: Sequence[Path], out_dir: Path, *, run: dict[str, Any]
) -> int:
    """Segment ``files`` one after the other into ``out_dir``; returns how many failed.

    Args:
        predictor: the model, loaded once for all of them.
        files: the CTs (:func:`check_folders`).
        out_dir: where the outputs and ``summary.csv`` go.
        run: the run options, as :func:`app.cli.segment_outputs.segment_file` takes them.
    """
    from syntumor_core.errors import SynTumorError
    from syntumor_core.volume import load_volume

    rows: list[dict[str, Any]] = []
    total = len(files)
    for position, path in enumerate(files, start=1):
        name = case_name(path)
        label = out_dir / f"{name}.nii.gz"
        head = f"[{position}/{total}] {path.name}"
        try:
            with progress_bar(head) as progress:
                done = segment_file(predictor, load_volume(path), path, label,
                                    out_dir / f"{name}_lesions.csv", run=run, progress=progress)  # fmt: skip
        except (SynTumorError, OSError, MemoryError) as error:
            reason = _reason(error)
            typer.echo(f"{head}: failed, skipped: {reason}")
            rows.append({"case": name, "file": path.name, "status": "failed", "error": reason})
            continue
        typer.echo(f"{head}: {done.describe()} -> {label}")
        rows.append({"case": name, "file": path.name, "status": "ok",
                     "liver_ml": round(done.liver_ml, 2), "tumors": done.tumors,
                     "tumor_ml": round(done.tumor_ml, 3), "seconds": round(done.seconds, 2)})  # fmt: skip
    failed = [row["file"] for row in rows if row["status"] == "failed"]
    _write_summary(out_dir / "summary.csv", rows)
    line = f"{total - len(failed)} of {total} segmented"
    if failed:
        line += f", {len(failed)} failed ({', '.join(failed)})"
    typer.echo(f"{line} -> {out_dir} (summary.csv)")
    return len(failed)


def _reason(error: BaseException) -> str:
    if isinstance(error, MemoryError):
        return "out of memory"
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    return str(error) or type(error).__name__


def _write_summary(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=SUMMARY_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)
