"""``syntumor realism``: score synthesis profiles against real lesions (issue 16).

Synthesizes ``--n`` tumors per type into the tumor-free organ of a CT with real lesion labels
(LiTS case 117 by default, or ``--image``/``--label``), prints the real-vs-synthetic table per
profile with KS p-values and the machine reader's AUC, and with ``--out DIR`` or ``--publish``
writes ``realism.json`` and the plots (``--publish``: to ``<data_dir>/realism``, shown on the
``/realism`` page). :func:`register` adds the command to the main Typer app.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

COMMAND_NAME = "realism"
DEFAULT_PROFILES = ("paper", "realistic")
DEFAULT_TYPES = ("tiny", "small", "medium", "large")  # syntumor_core.realism.score


def _case(image: Path | None, label: Path | None, organ_label: int, tumor_label: int):
    from app.cli.common import fail

    if (image is None) != (label is None):
        fail("give --image and --label together (or neither, for LiTS case 117)")
    if image is None:
        from syntumor_core.realism.score import lits117_case

        return lits117_case()
    import numpy as np

    from syntumor_core.realism.score import RealCase
    from syntumor_core.volume import load_label_nifti, load_nifti

    ct, labels = load_nifti(image), load_label_nifti(label)
    if ct.shape != labels.shape or not np.allclose(ct.affine, labels.affine, atol=1e-3):
        fail(f"--label {label.name} is not on the grid of --image {image.name}")
    return RealCase(
        image=ct.array,
        label=labels.array,
        spacing=ct.spacing,
        name=image.name,
        organ_value=organ_label,
        tumor_value=tumor_label,
        axial_axis=ct.axial_axis,
    )


def realism_command(
    n: Annotated[int, typer.Option("--n", min=1, help="Synthesis calls per tumor type.")] = 8,
    profile: Annotated[
        list[str] | None,
        typer.Option(help="Profile to score (repeatable; default paper and realistic)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthesis calls and the reader.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Folder for realism.json and the plots.")] = None,
    publish: Annotated[
        bool, typer.Option(help="Also write the report to DATA_DIR/realism (the /realism page).")
    ] = False,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Data folder (default $SYNTUMOR_DATA_DIR or ./var)."),
    ] = None,
    image: Annotated[
        Path | None, typer.Option(help="A CT with real lesions (default: LiTS case 117).")
    ] = None,
    label: Annotated[Path | None, typer.Option(help="Its label map (organ and lesions).")] = None,
    organ_label: Annotated[int, typer.Option(help="Organ parenchyma value in --label.")] = 1,
    tumor_label: Annotated[int, typer.Option(help="Lesion value in --label.")] = 2,
    tumor_type: Annotated[
        list[str] | None, typer.Option("--type", help="Tumor type (repeatable; default all four).")
    ] = None,
    min_voxels: Annotated[
        int | None,
        typer.Option(min=1, help="Smallest lesion compared (default: the 15th-largest real)."),
    ] = None,
    study: Annotated[
        int | None,
        typer.Option(
            help="Instead: the machine reader on this study's real vs synthetic test cases "
            "(shown on its results page)."
        ),
    ] = None,
) -> None:
    """Score synthesis profiles against real lesions: statistics, KS p, machine-reader AUC."""
    from app.cli.common import fail, progress_bar, user_errors

    if study is not None:
        _study_machine_reader(study, data_dir, seed)
        return
    from syntumor_core.synthesis import PROFILES

    profiles = list(dict.fromkeys(profile or DEFAULT_PROFILES))
    unknown = [name for name in profiles if name not in PROFILES]
    if unknown:
        fail(f"--profile {unknown[0]!r} is not a profile; choose from {', '.join(PROFILES)}")
    from syntumor_core.realism.report import format_table, save_report_folder
    from syntumor_core.realism.score import default_min_voxels, real_arm, score_realism

    reports = []
    with user_errors():
        case = _case(image, label, organ_label, tumor_label)
        threshold = min_voxels or default_min_voxels(case)
        real = real_arm(case, min_voxels=threshold)
        for name in profiles:
            with progress_bar(f"realism {name}") as progress:
                reports.append(
                    score_realism(
                        case,
                        profile=name,
                        n_per_type=n,
                        seed=seed,
                        tumor_types=tuple(tumor_type or DEFAULT_TYPES),
                        min_voxels=threshold,
                        real=real,
                        progress=progress,
                    )
                )
    typer.echo(
        f"{case.name}: {len(real.stats)} real lesions ≥ {threshold} voxels; "
        f"{n} call(s) per type, seed {seed}"
    )
    typer.echo(format_table(reports))
    folders = [out] if out is not None else []
    if publish:
        from app.cli.common import app_settings
        from app.realism.service import realism_folder

        folders.append(realism_folder(app_settings(data_dir).data_dir))
    extra = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": {"n": n, "seed": seed, "profiles": profiles, "min_voxels": threshold},
    }
    for folder in folders:
        typer.echo(f"wrote {save_report_folder(reports, folder, extra=extra)}")


def _study_machine_reader(study_id: int, data_dir: Path | None, seed: int) -> None:
    from app.cli.common import fail, user_errors
    from app.cli.studies import _database
    from app.db.study_tables import Study
    from app.studies.machine_reader import compute_study_machine_reader

    _, session_factory, storage = _database(data_dir)
    with user_errors(), session_factory() as session:
        row = session.get(Study, study_id)
        if row is None:
            fail(f"no study {study_id}")
        record = compute_study_machine_reader(session, storage, row, seed=seed)
    typer.echo(f"study {study_id}: {record['text']}")


def register(app: typer.Typer) -> None:
    """Add ``realism`` to ``app`` (a second call changes nothing).

    Args:
        app: the ``syntumor`` Typer application.
    """
    if any(info.name == COMMAND_NAME for info in app.registered_commands):
        return
    app.command(COMMAND_NAME)(realism_command)
