"""Helpers of the reader-study tests: owners, stored phantom cases, studies, readers' truths."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
import numpy as np

from tests.live_server import LiveServer

SHAPE_A, SPACING_A = (80, 72, 48), (2.5, 2.5, 2.5)
SHAPE_B, SPACING_B = (72, 64, 40), (3.0, 3.0, 3.0)


@dataclass
class Owner:
    username: str
    client: httpx.Client  # bearer token


def owner(server: LiveServer, role: str = "researcher") -> Owner:
    """A new user of ``role`` and a client authenticated with their API token."""
    username, password = server.create_user(role)
    session_client = server.login(username, password)
    try:
        token = session_client.post("/api/v1/auth/tokens", json={"name": "tests"}).json()["token"]
    finally:
        session_client.close()
    return Owner(username, server.client(headers={"Authorization": f"Bearer {token}"}))


def phantom_case(seed: int, shape, spacing, *, tumor_seed: int | None = None, tumor_type="medium"):
    """(image, labels) core volumes of a phantom: liver = 1, and tumor = 2 when ``tumor_seed``."""
    from syntumor_core.phantom import make_phantom
    from syntumor_core.synthesis import synthesize
    from syntumor_core.volume import Volume

    phantom = make_phantom(seed=seed, shape=shape, spacing=spacing)
    liver = phantom.organ_mask("liver")
    labels = liver.astype(np.uint8)
    image = np.asarray(phantom.image.array, np.float32)
    if tumor_seed is not None:
        made = synthesize(image, liver, spacing=phantom.image.spacing, seed=tumor_seed,
                          tumor_type=tumor_type)  # fmt: skip
        image, labels = made.image, made.label
    affine = phantom.image.affine
    return Volume(image, affine), Volume(labels.astype(np.uint8), affine)


def store_case(server: LiveServer, image, labels, name: str, *, source: str = "test",
               meta: dict | None = None) -> tuple[int, int]:  # fmt: skip
    """Store an image and its label map in the server's data folder; returns their ids.

    ``source`` (and ``meta``) record the image's origin as the app does: ``phantom`` with a
    ``phantom_seed``, ``sample`` for a bundled real CT, ``upload``...
    """
    from app.volumes.service import store_core_volume
    from app.volumes.storage import Storage

    storage = Storage(server.data_dir)
    with server.session() as session:
        image_row = store_core_volume(session, storage, image, name=name, source=source,
                                      meta=meta)  # fmt: skip
        label_row = store_core_volume(session, storage, labels, name=f"{name} – labels",
                                      kind="label", source=source, image_id=image_row.id,
                                      meta={"labels": {"1": "liver", "2": "tumor"}})  # fmt: skip
        session.commit()
        return image_row.id, label_row.id


def wait_ready(owner: Owner, study_id: int, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        study = owner.client.get(f"/api/v1/studies/{study_id}").json()
        if study["status"] in ("ready", "failed"):
            return study
        time.sleep(0.5)
    raise TimeoutError(f"study {study_id} still {study['status']} after {timeout} s")


def _served_files(server: LiveServer, count: int) -> tuple[list[str], int]:
    """``count`` blinded 8³ noise images in the data folder: (relative paths, common size)."""
    from syntumor_core.reader_study.blinding import CommonGrid, encode_case, served_size

    grid = CommonGrid((8, 8, 8), (1.0, 1.0, 1.0))
    rng = np.random.default_rng(0)
    folder = server.data_dir / "studies" / "test"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"{time.monotonic_ns()}-{index}.nii"
        path.write_bytes(encode_case(rng.normal(40, 20, grid.shape), grid))
        paths.append(str(path.relative_to(server.data_dir)))
    return paths, served_size(grid)


def ready_study_without_images(server: LiveServer, owner_name: str, n_real: int, n_synthetic: int,
                               *, with_images: bool = False, examples: int = 0, practice: int = 0,
                               arm_names=("Real", "Synthetic"), truths=("real", "synthetic"),
                               **settings) -> int:  # fmt: skip
    """A ready study of cases without stored volumes (for statistics, access and load tests).

    With ``with_images`` every case (and each of ``examples`` example cases) gets a small
    blinded image, so the image routes answer too. ``practice`` cases alternate between the
    arms, the first in the first arm.
    """
    from sqlalchemy import select

    from app.db.study_tables import Study, StudyArm, StudyCase
    from app.db.tables import User

    with server.session() as session:
        user = session.scalar(select(User).where(User.username == owner_name))
        study = Study(title="Statistics study", owner_id=user.id, status="ready", seed=7,
                      design={}, grid={"shape": [8, 8, 8], "spacing_mm": [1.0, 1.0, 1.0]},
                      **settings)  # fmt: skip
        for position, (name, truth) in enumerate(zip(arm_names, truths, strict=True)):
            study.arms.append(StudyArm(position=position, name=name, truth=truth,
                                       source="volumes", settings={}))  # fmt: skip
        paths, size = (
            _served_files(server, n_real + n_synthetic + practice + examples)
            if with_images
            else ([], None)
        )
        served = iter(paths)
        for arm, count in zip(study.arms, (n_real, n_synthetic), strict=True):
            for _ in range(count):
                study.cases.append(StudyCase(arm=arm, role="test", status="ready", plan={},
                                             served_path=next(served, None), served_bytes=size))  # fmt: skip
        for index in range(practice):
            study.cases.append(StudyCase(arm=study.arms[index % 2], role="practice", status="ready",
                                         plan={}, served_path=next(served, None), served_bytes=size))  # fmt: skip
        for index in range(examples):
            study.cases.append(StudyCase(arm=study.arms[0], role="example", status="ready", plan={},
                                         caption="Real tumor (example)",
                                         example_token=f"example{index}-{time.monotonic_ns()}",
                                         served_path=next(served), served_bytes=size))  # fmt: skip
        session.add(study)
        session.commit()
        return study.id


def readings_of(server: LiveServer, reader_id: int) -> list[dict]:
    """A reader's readings in order, with the truth of each (the test's answer key)."""
    from sqlalchemy import select

    from app.db.study_tables import StudyReading

    with server.session() as session:
        rows = session.scalars(
            select(StudyReading)
            .where(StudyReading.reader_id == reader_id)
            .order_by(StudyReading.position)
        ).all()
        return [{"token": r.token, "case_id": r.case_id, "reading": r.reading,
                 "truth": r.case.arm.truth, "arm": r.case.arm.name,
                 "practice": r.case.role == "practice"} for r in rows]  # fmt: skip


def invite(
    server: LiveServer, owner: Owner, study_id: int, label: str
) -> tuple[dict, httpx.Client]:
    """Invite a reader; returns the invitation and a client holding the reader's token."""
    answer = owner.client.post(f"/api/v1/studies/{study_id}/readers", json={"label": label})
    assert answer.status_code == 201, answer.text
    invitation = answer.json()
    reader = server.client(headers={"Authorization": f"Bearer {invitation['token']}"})
    return invitation, reader
