"""The demo reader study of ``syntumor serve --demo``: one real scan, real and synthetic tumors.

All cases come from LiTS case 117 (the real CT the demo seeds; see :mod:`app.demo_seed`):

- real arm: 88 mm crops centred on six of its real tumors (equivalent diameters 12-36 mm,
  at least 20 mm apart);
- synthetic arm: six tumors synthesized by the engine into tumor-free liver of the same scan
  (the liver minus its real tumors dilated by about 5 mm), type and count matched to the real
  arm's sizes, each crop centred on its synthetic tumor;
- examples: one more real tumor and one more synthetic tumor, captioned.

Neighbouring real tumors can appear at the edge of any crop; the description says so. The
synthesis runs right here (well under a second per case) rather than through the worker, and
the blinded copies are written by the same :func:`encode_study` as for any study. A second
start finds the study and only issues a fresh link for the demo reader.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.study_tables import Study, StudyArm, StudyCase, StudyReader, StudyStatus
from app.db.tables import User, Volume
from app.studies.prepare import encode_study
from app.studies.service import invite_reader, new_case_token, reissue_link
from app.volumes.service import store_core_volume
from app.volumes.storage import Storage

DEMO_TITLE = "Visual Turing Test — LiTS case 117 (demo)"
DEMO_READER = "Demo reader"
DEMO_SEED = 117
N_CASES = 6
BOX_MM = 88.0
STORED_CROP_MM = 100.0
DIAMETER_RANGE_MM = (12.0, 36.0)
MIN_SEPARATION_MM = 20.0
TUMOR_MARGIN_VOXELS = 4  # about 5.5 mm at the sample's 1.375 mm
DESCRIPTION = (
    "Demo study. Every case is an 88 mm crop of ONE real CT scan (LiTS case 117, loaded from a "
    "Python package, local use only). Real-arm cases are centred on real liver tumors of that "
    "scan; synthetic-arm cases are centred on tumors that SynTumor synthesized into tumor-free "
    "parts of the same liver, sizes matched to the real ones. Other real tumors of the scan may "
    "appear near the edge of any crop."
)
INSTRUCTIONS = (
    "Judge the tumor under the crosshair at the centre of the view. Scroll through the slices, "
    "try the CT windows and the 3-D view. If something gives a case away as synthetic, move the "
    "crosshair onto it (click) and press X."
)


def _real_tumors(labels: np.ndarray, affine: np.ndarray, spacing) -> list[dict]:
    """Real tumors in the diameter range, largest first, at least MIN_SEPARATION_MM apart."""
    from syntumor_core.reader_study.design import equivalent_diameter_mm

    components, count = ndimage.label(labels == 2, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    voxel_mm3 = float(np.prod(spacing))
    chosen: list[dict] = []
    for index in np.argsort(sizes[1:])[::-1] + 1:
        diameter = equivalent_diameter_mm(sizes[index] * voxel_mm3)
        if not DIAMETER_RANGE_MM[0] <= diameter <= DIAMETER_RANGE_MM[1]:
            continue
        voxel = np.array(ndimage.center_of_mass(components == index))
        centre = affine[:3, :3] @ voxel + affine[:3, 3]
        if all(
            np.linalg.norm(centre - np.array(c["centre_mm"])) >= MIN_SEPARATION_MM for c in chosen
        ):
            chosen.append(
                {"diameter_mm": round(diameter, 2), "centre_mm": [float(v) for v in centre]}
            )
    return chosen


def _synthesize(image, organ_mask, plan) -> dict:
    from syntumor_core import synthesis as engine
    from syntumor_core.reader_study.design import (
        focus_point_mm,
        matched_profile,
        tumor_diameters_mm,
    )
    from syntumor_core.volume import Volume as CoreVolume

    profile = matched_profile(engine.get_organ_profile("liver"), plan.tumor_type, plan.count)
    made = engine.synthesize(np.asarray(image.array, np.float32), organ_mask, spacing=image.spacing,
                             seed=plan.seed, organ="liver", tumor_type=plan.tumor_type,
                             profile="paper", organ_profile=profile, axial_axis=image.axial_axis)  # fmt: skip
    centre = focus_point_mm(made.label, image.affine)
    crop, affine = _crop_box(image, centre)
    return {
        "image": CoreVolume(np.ascontiguousarray(made.image[crop]), affine),
        "label": CoreVolume(np.ascontiguousarray(made.label[crop]), affine),
        "diameters_mm": [round(d, 2) for d in tumor_diameters_mm(made.label, image.spacing)],
        "centre_mm": centre,
    }


def _crop_box(image, centre_mm) -> tuple[tuple[slice, ...], np.ndarray]:
    """A box of STORED_CROP_MM around ``centre_mm`` (kept inside the image) and its affine.

    Only the neighbourhood readers see is stored for a synthetic case: an eighth of the scan.
    """
    affine = np.asarray(image.affine, float)
    centre = np.linalg.solve(affine[:3, :3], np.asarray(centre_mm) - affine[:3, 3])
    half = np.ceil(STORED_CROP_MM / 2 / np.asarray(image.spacing)).astype(int)
    shape = np.asarray(image.shape)
    start = np.clip(np.round(centre).astype(int) - half, 0, np.maximum(shape - 2 * half, 0))
    stop = np.minimum(start + 2 * half, shape)
    shifted = affine.copy()
    shifted[:3, 3] = affine[:3, :3] @ start + affine[:3, 3]
    return tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True)), shifted


def _new_study(admin: User) -> Study:
    study = Study(title=DEMO_TITLE, description=DESCRIPTION, instructions=INSTRUCTIONS,
                  owner_id=admin.id, status=StudyStatus.PREPARING, positive_class="synthetic",
                  allow_unsure=True, confidence_scale=True, allow_change=False, repeats=1,
                  click_synthetic=True, seed=DEMO_SEED, design={"box_mm": BOX_MM, "spacing_mm": None})  # fmt: skip
    study.arms.append(
        StudyArm(position=0, name="Real tumors", truth="real", source="volumes", settings={})
    )
    study.arms.append(StudyArm(position=1, name="Synthetic tumors", truth="synthetic", source="synthesize",
                               settings={"organ": "liver", "profile": "paper", "match_arm": 0}))  # fmt: skip
    return study


def _add_synthetic(session, storage, study, admin, image_row, label_row, image, mask, plan, role):
    made = _synthesize(image, mask, plan)
    title = f"Demo study case (synthetic, seed {plan.seed})"
    out = store_core_volume(session, storage, made["image"], name=title, source="study",
                            owner_id=admin.id, meta={"demo_study": True})  # fmt: skip
    out_label = store_core_volume(session, storage, made["label"], name=f"{title} – label",
                                  kind="label", source="study", owner_id=admin.id,
                                  image_id=out.id, meta={"labels": {"1": "liver", "2": "tumor"}})  # fmt: skip
    study.cases.append(StudyCase(
        arm=study.arms[1], role=role, status="ready", image_id=out.id, label_id=out_label.id,
        source_image_id=image_row.id, mask_id=label_row.id, centre_mm=made["centre_mm"],
        caption="Synthetic tumor (example)" if role == "example" else "",
        example_token=new_case_token() if role == "example" else None,
        plan={"mirrors": plan.mirrors, "diameter_mm": plan.diameter_mm, "tumor_type": plan.tumor_type,
              "count": plan.count, "covered": plan.covered, "seed": plan.seed, "matched": True,
              "synthesized_diameters_mm": made["diameters_mm"]},
    ))  # fmt: skip


def _build(
    session: Session, storage: Storage, admin: User, image_row: Volume, label_row: Volume
) -> Study:
    from syntumor_core.reader_study.design import plan_matched_cases
    from syntumor_core.synthesis import get_organ_profile

    image, labels = storage.load(image_row.path), storage.load(label_row.path, label=True)
    array = np.asarray(labels.array)
    tumors = _real_tumors(array, np.asarray(labels.affine), labels.spacing)[: N_CASES + 1]
    if len(tumors) < N_CASES + 1:
        raise ValueError(f"LiTS-117 has only {len(tumors)} separated tumors of 12-36 mm")
    study = _new_study(admin)
    session.add(study)
    for index, tumor in enumerate(tumors):
        role = "test" if index < N_CASES else "example"
        study.cases.append(StudyCase(
            arm=study.arms[0], role=role, status="ready", image_id=image_row.id,
            label_id=label_row.id, centre_mm=tumor["centre_mm"],
            plan={"diameters_mm": [tumor["diameter_mm"]]},
            caption="Real tumor (example)" if role == "example" else "",
            example_token=new_case_token() if role == "example" else None,
        ))  # fmt: skip
    liver = (array == 1) & ~ndimage.binary_dilation(array == 2, iterations=TUMOR_MARGIN_VOXELS)
    rng = np.random.default_rng(DEMO_SEED)
    plans = plan_matched_cases([[t["diameter_mm"]] for t in tumors], N_CASES + 1,
                               get_organ_profile("liver"), rng=rng, max_count=1)  # fmt: skip
    for index, plan in enumerate(plans):
        role = "test" if index < N_CASES else "example"
        _add_synthetic(
            session, storage, study, admin, image_row, label_row, image, liver, plan, role
        )
    session.flush()
    _record_checks(session, study, admin)
    encode_study(session, storage, study)
    return study


def _record_checks(session: Session, study: Study, admin: User) -> None:
    """The demo's design checks, recorded as for any study: the design is clean (both arms
    6 cases of the one real scan at its own voxel size), so nothing needs acknowledging."""
    from app.studies import checks

    arms, extra = checks.scans_of_study(session, study)
    report = checks.design_checks(arms, box_mm=BOX_MM, also_shown=extra)
    checks.require_acknowledged(report, [])
    study.design = {**study.design, **checks.record(report, [], admin)}


def seed_demo_study(session: Session, storage: Storage, admin: User) -> list[str]:
    """Seed the demo study once; on every start print a fresh link for the demo reader."""
    study = session.scalar(select(Study).where(Study.title == DEMO_TITLE))
    if study is None:
        image_row = session.scalar(
            select(Volume).where(Volume.source == "sample", Volume.name == "LiTS case 117")
        )
        label_row = None
        if image_row is not None:
            label_row = session.scalar(
                select(Volume).where(Volume.image_id == image_row.id, Volume.kind == "label")
            )
        if image_row is None or label_row is None:
            return ["demo reader study not seeded: it needs the LiTS case 117 sample"]
        study = _build(session, storage, admin, image_row, label_row)
    elif any((case.served_path or "").endswith(".gz") for case in study.cases):
        encode_study(session, storage, study)  # copies of an earlier version: re-encode
    reader = session.scalar(
        select(StudyReader).where(
            StudyReader.study_id == study.id, StudyReader.label == DEMO_READER
        )
    )
    if reader is None:
        reader, token = invite_reader(session, study, DEMO_READER)
    else:
        token = reissue_link(session, reader)
    n_test = sum(case.role == "test" for case in study.cases)
    return [
        f"demo reader study {DEMO_TITLE!r}: {n_test} cases (real and synthetic tumors of one real "
        f"scan), results at /studies/{study.id}",
        f"demo reader's invitation (new on every start): /r/{token}",
    ]
