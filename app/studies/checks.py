"""Design checks of a reader study, made before anything is prepared.

A study can be blinded perfectly in its files and still be confounded in its design: a real
arm of one real CT against a synthetic arm of three procedural phantoms tells a reader the
arm by the scan, whatever the tumors look like. The builder therefore looks at what each arm
is made of, from the stored volumes' rows alone (no file is read):

- **arm sizes**: how many cases each arm has;
- **sources**: what each arm's scans are (:func:`origin_of`: real CT, phantom, uploaded scan,
  synthesized volume) and from how many distinct scans its cases come;
- **voxel spacing and the display grid**: the grid every case will be shown on (the same
  :func:`~syntumor_core.reader_study.blinding.common_grid` as the encoder's, from the rows'
  shapes and spacings), and which cases it smooths or interpolates;
- **tumor sizes**: matched to the other arm at preparation, fixed, or measured and compared
  after preparation (:func:`size_check_after_preparation`).

Each finding is a check ``{"code", "level", "message", "cue"}``. ``info`` is shown; a
``warning`` is a confound the owner must acknowledge (its code listed in the spec's
``acknowledge``); an ``error`` means the study cannot be blinded and is refused. The checks
and the acknowledgement are recorded in the study's ``design`` and shown in its report, with
the cues that remain.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from app.db.tables import User, Volume
from app.studies.errors import DesignNotAcknowledged, StudyError  # noqa: F401

INFO, WARNING, ERROR = "info", "warning", "error"
MIN_GRID_VOXELS = 16
SPACING_TOLERANCE = 0.05  # relative: spacings closer than 5 % count as the same
ORIGINS = {"phantom": "phantom", "sample": "real CT scan", "upload": "uploaded scan",
           "synthesis": "synthesized volume", "study": "synthesized volume"}  # fmt: skip


@dataclass
class ArmScans:
    """One arm as the checks see it: the scan (image row) behind each of its cases."""

    name: str
    truth: str
    source: str  # volumes | synthesize
    settings: dict[str, Any]
    scans: list[Volume] = field(default_factory=list)


def origin_of(volume: Volume) -> str:
    """What a stored image is: ``real CT scan`` (a bundled sample such as LiTS), ``phantom``
    (``syntumor phantom``, the demo's), ``uploaded scan``, ``synthesized volume``, or
    ``<source> volume`` for anything else."""
    if (volume.meta or {}).get("phantom_seed") is not None:
        return "phantom"
    return ORIGINS.get(volume.source, f"{volume.source} volume")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _spacing(volume: Volume) -> tuple[float, ...]:
    return tuple(round(float(s), 3) for s in volume.spacing)


def arm_summary(arm: ArmScans) -> dict[str, Any]:
    """Cases, distinct scans per origin and voxel spacings of one arm."""
    distinct = {scan.id: scan for scan in arm.scans}
    origins = Counter(origin_of(scan) for scan in distinct.values())
    spacings = sorted({_spacing(scan) for scan in arm.scans})
    return {
        "name": arm.name,
        "truth": arm.truth,
        "source": arm.source,
        "cases": len(arm.scans),
        "scans": len(distinct),
        "origins": dict(sorted(origins.items())),
        "made_of": ", ".join(_plural(n, origin) for origin, n in sorted(origins.items())),
        "spacing_mm": [list(s) for s in spacings],
        "tumor_sizes": _size_plan(arm),
    }


def _size_plan(arm: ArmScans) -> str:
    if arm.source == "synthesize" and arm.settings.get("tumor_type"):
        return f"one fixed tumor type ({arm.settings['tumor_type']}), sizes not matched"
    if arm.source == "synthesize":
        return "types and counts matched to the other arm's measured sizes at preparation"
    return "measured from the label maps at preparation"


def expected_grid(
    arms: list[ArmScans], box_mm, spacing_mm, also_shown: list[Volume] = ()
) -> dict[str, Any]:
    """The display grid the encoder will choose, from the scans' shapes and spacings
    (``also_shown``: the example and practice cases, which share the grid)."""
    from syntumor_core.reader_study.blinding import common_grid

    scans = [scan for arm in arms for scan in arm.scans] + [s for s in also_shown if s]
    volumes = [(scan.shape, np.diag([*map(float, scan.spacing), 1.0])) for scan in scans]
    grid = common_grid(volumes, spacing_mm=[spacing_mm] * 3 if spacing_mm else None, box_mm=box_mm)
    return {
        **grid.to_dict(),
        "spacing_from": "the study's setting" if spacing_mm else "the coarsest case (default)",
        "box_from": f"at most {box_mm} mm and every case's extent" if box_mm else
        "the smallest case's extent",
    }  # fmt: skip


def _check(code: str, level: str, message: str, cue: str | None = None) -> dict[str, Any]:
    return {"code": code, "level": level, "message": message, "cue": cue}


def _count_checks(summaries: list[dict]) -> list[dict]:
    a, b = summaries
    if a["cases"] == b["cases"]:
        return []
    return [_check(
        "arm_sizes_differ", WARNING,
        f"arm {a['name']!r} has {_plural(a['cases'], 'case')}, arm {b['name']!r} "
        f"{_plural(b['cases'], 'case')}: readers who guess the split learn the arms' base rate",
        f"{a['cases']} vs {b['cases']} cases",
    )]  # fmt: skip


def _source_checks(summaries: list[dict]) -> list[dict]:
    a, b = summaries
    made_of = f"{a['name']} from {a['made_of']}, {b['name']} from {b['made_of']}"
    if set(a["origins"]) != set(b["origins"]):
        return [_check("sources_differ", WARNING,
                       f"the arms come from different kinds of scan ({made_of}): a reader who "
                       "tells the scans apart knows the arm", made_of)]  # fmt: skip
    if a["scans"] != b["scans"]:
        return [_check("scan_counts_differ", WARNING,
                       f"the arms come from different numbers of scans ({made_of}): a scan "
                       "seen again and again points to one arm", made_of)]  # fmt: skip
    return [_check("sources", INFO, f"both arms alike: {made_of}")]


def _differs(first: list[list[float]], second: list[list[float]]) -> bool:
    top = np.max(np.asarray(first), axis=0), np.max(np.asarray(second), axis=0)
    return bool(np.any(np.abs(top[0] - top[1]) > SPACING_TOLERANCE * np.maximum(*top)))


def _spacing_checks(summaries: list[dict], arms: list[ArmScans], grid: dict) -> list[dict]:
    a, b = summaries
    shown = "×".join(f"{s:g}" for s in grid["spacing_mm"])
    checks = [_check("display_grid", INFO,
                     f"every case is shown on {'×'.join(map(str, grid['shape']))} voxels at "
                     f"{shown} mm (voxel size from {grid['spacing_from']}, box from "
                     f"{grid['box_from']})")]  # fmt: skip
    if _differs(a["spacing_mm"], b["spacing_mm"]):
        text = "; ".join(f"{s['name']} at " + ", ".join("×".join(f"{v:g}" for v in sp)
                         for sp in s["spacing_mm"]) + " mm" for s in summaries)  # fmt: skip
        checks.append(_check("spacing_differs", WARNING,
                             f"the arms were acquired at different voxel sizes ({text}); both are "
                             f"shown at {shown} mm, the finer one smoothed to it, but noise and "
                             "sharpness may still differ", f"voxel size: {text}"))  # fmt: skip
    finer = np.asarray(grid["spacing_mm"]) * (1 + SPACING_TOLERANCE)
    for index, arm in enumerate(arms):
        coarse = sum(bool(np.any(np.asarray(scan.spacing) > finer)) for scan in arm.scans)
        if coarse:
            checks.append(_check(f"grid_interpolates_arm{index}",
                                 WARNING, f"{_plural(coarse, 'case')} of arm {arm.name!r} are "
                                 f"coarser than the {shown} mm grid: interpolated, they look "
                                 "smoother than the others", f"{arm.name}: interpolated cases"))  # fmt: skip
    if min(grid["shape"]) < MIN_GRID_VOXELS:
        checks.append(_check("grid_too_small", ERROR,
                             f"the common box is only {min(grid['shape'])} voxels along an axis "
                             f"(at least {MIN_GRID_VOXELS}): a case is too small, or box_mm too "
                             "small, to show every case on one grid"))  # fmt: skip
    return checks


def _overlap_checks(arms: list[ArmScans]) -> list[dict]:
    if any(arm.source != "volumes" for arm in arms):
        return []
    shared = {s.id for s in arms[0].scans} & {s.id for s in arms[1].scans}
    if not shared:
        return []
    return [_check("same_volume_in_both_arms", ERROR,
                   f"volume(s) {sorted(shared)} are cases of both arms: the same image cannot "
                   "be both real and synthetic")]  # fmt: skip


def _size_checks(arms: list[ArmScans]) -> list[dict]:
    checks = []
    for arm in arms:
        if arm.source == "synthesize" and arm.settings.get("tumor_type"):
            checks.append(_check("sizes_not_matched", WARNING,
                                 f"arm {arm.name!r} synthesizes one fixed tumor type "
                                 f"({arm.settings['tumor_type']}): its tumor sizes are not "
                                 "matched to the other arm", "tumor sizes not matched"))  # fmt: skip
    if all(arm.source == "volumes" for arm in arms) and arms[0].truth != arms[1].truth:
        checks.append(_check("sizes_compared_after_preparation", INFO,
                             "both arms are stored volumes: their tumor sizes are measured at "
                             "preparation and compared side by side in the report, not matched"))  # fmt: skip
    return checks


def design_checks(
    arms: list[ArmScans], *, box_mm=None, spacing_mm=None, also_shown: list[Volume] = ()
) -> dict[str, Any]:
    """Every check of a two-arm design: ``{"arms", "grid", "checks"}`` (JSON-ready)."""
    summaries = [arm_summary(arm) for arm in arms]
    checks = _overlap_checks(arms)
    try:
        grid = expected_grid(arms, box_mm, spacing_mm, also_shown)
    except ValueError as error:  # the core's ParameterError: no grid fits
        grid = None
        checks.append(_check("grid_impossible", ERROR, f"no common grid: {error}"))
    checks += _count_checks(summaries) + _source_checks(summaries)
    if grid is not None:
        checks += _spacing_checks(summaries, arms, grid)
    checks += _size_checks(arms)
    return {"arms": summaries, "grid": grid, "checks": checks}


def open_warnings(report: dict[str, Any], acknowledged: list[str]) -> list[dict[str, Any]]:
    """The warnings of ``report`` whose code is not in ``acknowledged``."""
    return [c for c in report["checks"] if c["level"] == WARNING and c["code"] not in acknowledged]


def require_acknowledged(report: dict[str, Any], acknowledged: list[str]) -> None:
    """Refuse a design with errors (422) or with warnings not acknowledged (409)."""
    errors = [c for c in report["checks"] if c["level"] == ERROR]
    if errors:
        raise DesignNotAcknowledged(
            "the study cannot be blinded: " + "; ".join(c["message"] for c in errors),
            report["checks"], 422,
        )  # fmt: skip
    missing = open_warnings(report, acknowledged)
    if missing:
        codes = ", ".join(c["code"] for c in missing)
        raise DesignNotAcknowledged(
            f"the design has {_plural(len(missing), 'warning')} to acknowledge ({codes}): "
            "list their codes in `acknowledge` to create the study anyway",
            report["checks"], 409,
        )  # fmt: skip


def record(report: dict[str, Any], acknowledged: list[str], owner: User | None) -> dict:
    """What the study's ``design`` keeps of the checks: the checks, who acknowledged what."""
    warnings = [c["code"] for c in report["checks"] if c["level"] == WARNING]
    return {
        "checks": report["checks"],
        "arms_made_of": report["arms"],
        "expected_grid": report["grid"],
        "acknowledged": [code for code in warnings if code in acknowledged],
        "acknowledged_by": owner.username if owner is not None and warnings else None,
        "acknowledged_at": datetime.now(UTC).isoformat() if warnings else None,
    }


def _scan(session: Session, volume_id: int, where: str) -> Volume:
    volume = session.get(Volume, volume_id)
    if volume is None:
        raise StudyError(f"{where}: volume {volume_id} not found", 404)
    if volume.kind != "image":
        raise StudyError(f"{where}: volume {volume_id} is a label map, not an image")
    return volume


def scans_of_spec(session: Session, spec: dict[str, Any]) -> list[ArmScans]:
    """The arms of a study spec with the image row behind each case."""
    arms = []
    for arm in spec["arms"]:
        items = arm.get("volumes") if arm["source"] == "volumes" else arm.get("healthy")
        where = f"arm {arm['name'].strip()!r}"
        scans = [_scan(session, item["image_id"], where) for item in items or []]
        arms.append(ArmScans(arm["name"].strip(), arm["truth"], arm["source"],
                             {k: arm.get(k) for k in ("tumor_type", "organ")}, scans))  # fmt: skip
    return arms


def scans_of_study(session: Session, study) -> tuple[list[ArmScans], list[Volume]]:
    """The arms of a built study (e.g. the demo's) and the scans of its other cases."""
    arms = [
        ArmScans(arm.name, arm.truth, arm.source, dict(arm.settings or {})) for arm in study.arms
    ]
    extra = []
    for case in study.cases:
        scan = session.get(Volume, case.source_image_id or case.image_id)
        if case.role == "test":
            arms[study.arms.index(case.arm)].scans.append(scan)
        else:
            extra.append(scan)
    return arms, extra


def design_report(session: Session, spec: dict[str, Any]) -> dict[str, Any]:
    """The checks of a spec before anything is created, and whether it would be accepted."""
    arms = scans_of_spec(session, spec)
    extra = [_scan(session, item["image_id"], role)
             for role in ("examples", "practice") for item in spec.get(role) or []]  # fmt: skip
    report = design_checks(
        arms, box_mm=spec.get("box_mm"), spacing_mm=spec.get("spacing_mm"), also_shown=extra
    )
    missing = [c["code"] for c in open_warnings(report, list(spec.get("acknowledge") or []))]
    errors = [c for c in report["checks"] if c["level"] == ERROR]
    return {**report, "unacknowledged": missing, "ok": not missing and not errors}
