"""The study builder's design checks, before anything is prepared.

The confounded design of issue 14: a real arm of ONE real CT against a synthetic arm
synthesized into THREE procedural phantoms (1 vs 3 cases, different kinds of scan, 2.5 vs
3 mm voxels). The checks read only what the volumes' rows record (origin, shape, spacing), so
a phantom's pixels stand in for the real CT here; its row says ``sample`` (a bundled real CT),
as the LiTS sample's does.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.app.studies_support import SHAPE_A, SHAPE_B, SPACING_A, SPACING_B, phantom_case
from tests.app.studies_support import store_case as store
from tests.live_server import REPO

CONFOUNDS = {"arm_sizes_differ", "sources_differ", "spacing_differs"}


@pytest.fixture(scope="module")
def volumes(server) -> dict:
    real = store(server, *phantom_case(20, SHAPE_A, SPACING_A, tumor_seed=1), "real CT",
                 source="sample", meta={"real_tumors": True})  # fmt: skip
    phantoms = [store(server, *phantom_case(30 + i, SHAPE_B, SPACING_B), f"phantom {30 + i}",
                      source="phantom", meta={"phantom_seed": 30 + i}) for i in range(3)]  # fmt: skip
    return {"real": real[0], "phantoms": [image for image, _ in phantoms]}


@pytest.fixture(scope="module")
def owner(server):
    username, password = server.create_user("researcher")
    client = server.login(username, password)
    yield username, client
    client.close()


def confounded(volumes: dict, **extra) -> dict:
    return {
        "title": "Confounded study",
        "prepare": False,
        "arms": [
            {"name": "Real tumors", "truth": "real", "volumes": [{"image_id": volumes["real"]}]},
            {"name": "Synthetic tumors", "truth": "synthetic", "source": "synthesize",
             "healthy": [{"image_id": i} for i in volumes["phantoms"]]},
        ],
        **extra,
    }  # fmt: skip


def _warnings(checks: list[dict]) -> dict[str, dict]:
    return {c["code"]: c for c in checks if c["level"] == "warning"}


def test_the_builder_names_every_confound_before_anything_is_made(owner, volumes):
    _, client = owner
    report = client.post("/api/v1/studies/checks", json=confounded(volumes))
    assert report.status_code == 200, report.text
    body = report.json()
    warnings = _warnings(body["checks"])
    assert set(warnings) == CONFOUNDS and not body["ok"]
    assert sorted(body["unacknowledged"]) == sorted(CONFOUNDS)
    assert "1 case" in warnings["arm_sizes_differ"]["message"]
    assert "3 cases" in warnings["arm_sizes_differ"]["message"]
    cue = warnings["sources_differ"]["cue"]
    assert cue == "Real tumors from 1 real CT scan, Synthetic tumors from 3 phantoms"
    assert "2.5" in warnings["spacing_differs"]["message"]
    real, synthetic = body["arms"]
    assert (real["cases"], real["scans"], real["origins"]) == (1, 1, {"real CT scan": 1})
    assert (synthetic["cases"], synthetic["scans"], synthetic["origins"]) == (3, 3, {"phantom": 3})
    assert body["grid"]["spacing_mm"] == [3.0, 3.0, 3.0]  # the coarsest, said so
    assert "coarsest" in body["grid"]["spacing_from"]
    shown = [c for c in body["checks"] if c["code"] == "display_grid"][0]["message"]
    assert "×".join(map(str, body["grid"]["shape"])) in shown and "3×3×3 mm" in shown


def test_the_confounded_design_must_be_acknowledged(server, owner, volumes):
    _, client = owner
    before = client.get("/api/v1/studies").json()["total"]
    refused = client.post("/api/v1/studies", json=confounded(volumes))
    assert refused.status_code == 409
    assert all(code in refused.json()["detail"] for code in CONFOUNDS)
    assert set(_warnings(refused.json()["checks"])) == CONFOUNDS
    partly = client.post("/api/v1/studies",
                         json=confounded(volumes, acknowledge=["sources_differ", "spacing_differs"]))  # fmt: skip
    assert partly.status_code == 409
    assert "arm_sizes_differ" in partly.json()["detail"]
    assert "sources_differ" not in partly.json()["detail"]
    assert client.get("/api/v1/studies").json()["total"] == before  # nothing was created
    bad = client.post("/api/v1/studies", json=confounded(volumes, acknowledge=["Sources!"]))
    assert bad.status_code == 422 and "acknowledge.0" in bad.json()["detail"]


def test_an_acknowledged_design_is_recorded_and_reported(server, owner, volumes):
    username, client = owner
    made = client.post("/api/v1/studies", json=confounded(volumes, acknowledge=sorted(CONFOUNDS)))
    assert made.status_code == 201, made.text
    design = made.json()["design"]
    assert sorted(design["acknowledged"]) == sorted(CONFOUNDS)
    assert design["acknowledged_by"] == username
    assert set(_warnings(design["checks"])) == CONFOUNDS
    study_id = made.json()["id"]
    summary = client.get(f"/api/v1/studies/{study_id}/export/summary.json").json()
    reported = summary["results"]["design"]
    assert "Real tumors from 1 real CT scan, Synthetic tumors from 3 phantoms" in reported["cues"]
    assert "1 vs 3 cases" in reported["cues"]
    detail = client.get(f"/studies/{study_id}")
    assert "Design checks" in detail.text and "sources_differ" in detail.text
    page = client.get(f"/studies/{study_id}/report")
    assert page.status_code == 200
    for text in ("Design checks", "Cues that remain", "1 real CT scan", "3 phantoms",
                 "1 vs 3 cases", f"acknowledged by {username}", "sources_differ"):  # fmt: skip
        assert text in page.text, text


def test_a_design_that_cannot_be_blinded_is_refused(owner, volumes):
    _, client = owner
    same = {"image_id": volumes["phantoms"][0]}
    spec = {"title": "Same scan twice", "prepare": False,
            "arms": [{"name": "A", "truth": "real", "volumes": [same]},
                     {"name": "B", "truth": "synthetic", "volumes": [same]}]}  # fmt: skip
    refused = client.post("/api/v1/studies", json={**spec, "acknowledge": sorted(CONFOUNDS)})
    assert refused.status_code == 422
    assert "cannot be blinded" in refused.json()["detail"]
    errors = [c["code"] for c in refused.json()["checks"] if c["level"] == "error"]
    assert errors == ["same_volume_in_both_arms"]


def test_the_cli_lists_the_warnings_and_takes_acknowledge(server, owner, volumes):
    username, _ = owner
    command = [sys.executable, "-m", "app.cli", "study", "create", "--title", "CLI confounded",
               "--real", str(volumes["real"]), "--owner", username, "--data-dir",
               str(server.data_dir)] + [a for i in volumes["phantoms"] for a in ("--healthy", str(i))]  # fmt: skip
    env = server.environment()
    refused = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert refused.returncode == 2, refused.stderr
    for code in CONFOUNDS:
        assert f"warning  {code}:" in refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith("error: the design has 3 warnings")
    acknowledged = [a for code in sorted(CONFOUNDS) for a in ("--acknowledge", code)]
    made = subprocess.run(command + acknowledged, cwd=REPO, env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("study ") and "created" in made.stdout


def _study_with_sizes(real: list[float], synthetic: list[float]):
    from app.db.study_tables import Study, StudyArm, StudyCase

    study = Study(title="sizes", design={})
    for position, (truth, sizes) in enumerate((("real", real), ("synthetic", synthetic))):
        arm = StudyArm(id=position + 1, position=position, name=truth.title(), truth=truth)
        study.arms.append(arm)
        for size in sizes:
            study.cases.append(StudyCase(arm=arm, arm_id=arm.id, role="test",
                                         plan={"diameters_mm": [size, 3.0]}))  # fmt: skip
    return study


def test_measured_tumor_sizes_are_compared_after_preparation():
    from app.studies.results import design_summary

    apart = design_summary(_study_with_sizes([10, 11, 12, 13, 14], [30, 31, 32, 33, 34]))
    size_check = [c for c in apart["checks"] if c["code"] == "tumor_sizes_differ"]
    assert size_check and size_check[0]["level"] == "warning"
    assert (
        "Real median 12.0 mm" in size_check[0]["message"] and size_check[0]["cue"] in apart["cues"]
    )
    alike = design_summary(_study_with_sizes([10, 20, 30, 40], [12, 22, 28, 41]))
    assert [c["level"] for c in alike["checks"] if c["code"].startswith("tumor_sizes")] == ["info"]
    assert alike["cues"] == [] and not alike["checked"]  # made before the builder checked
