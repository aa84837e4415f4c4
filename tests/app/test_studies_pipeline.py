"""A study built through the whole pipeline, then checked for blinding and access.

Real arm: three phantom cases with tumors and their label maps (80×72×48 at 2.5 mm). Synthetic
arm: three healthy phantoms of another size and voxel size (72×64×40 at 3 mm) into which the
worker synthesizes tumors matched to the real arm's sizes. Both arms must reach the reader's
browser looking the same in everything but the pixels.
"""

from __future__ import annotations

import io
import re

import httpx
import pytest

from tests.app.studies_support import (
    SHAPE_A,
    SHAPE_B,
    SPACING_A,
    SPACING_B,
    invite,
    owner,
    phantom_case,
    readings_of,
    store_case,
    wait_ready,
)

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{24}$")
PER_CASE_FIELDS = {"token", "position", "previous", "next", "image_url"}


@pytest.fixture(scope="module")
def study(server):
    study_owner = owner(server)
    real = [store_case(server, *phantom_case(20 + i, SHAPE_A, SPACING_A, tumor_seed=i, tumor_type=t),
                       f"real {i}") for i, t in enumerate(("medium", "small", "medium"))]  # fmt: skip
    example = store_case(server, *phantom_case(29, SHAPE_A, SPACING_A, tumor_seed=9), "example")
    healthy = [store_case(server, *phantom_case(30 + i, SHAPE_B, SPACING_B), f"healthy {i}")
               for i in range(3)]  # fmt: skip
    spec = {
        "title": "Pipeline study",
        "description": "phantoms only",
        "repeats": 1,
        "seed": 7,  # the tumor plans follow from it: the same study on every run
        "click_synthetic": True,
        "arms": [
            {"name": "Real tumors", "truth": "real", "volumes": [{"image_id": i} for i, _ in real]},
            {"name": "Synthetic tumors", "truth": "synthetic", "source": "synthesize",
             "healthy": [{"image_id": i, "mask_labels": [1]} for i, _ in healthy]},
        ],
        "examples": [{"image_id": example[0], "caption": "Real tumor (example)"}],
        "acknowledge": ["spacing_differs"],  # 2.5 mm against 3 mm, on purpose
    }  # fmt: skip
    answer = study_owner.client.post("/api/v1/studies", json=spec)
    assert answer.status_code == 201, answer.text
    assert answer.json()["job"]["kind"] == "study_prepare"
    prepared = wait_ready(study_owner, answer.json()["id"])
    assert prepared["status"] == "ready", prepared["status_message"]
    return study_owner, prepared


def test_synthetic_arm_matches_the_real_arm_sizes(study):
    from syntumor_core.reader_study.design import match_tumor_type
    from syntumor_core.synthesis import get_organ_profile

    _, prepared = study
    profile = get_organ_profile("liver")
    real = [c for c in prepared["cases"] if c["truth"] == "real" and c["role"] == "test"]
    synthetic = [c for c in prepared["cases"] if c["truth"] == "synthetic"]
    assert len(real) == len(synthetic) == 3
    assert sorted(c["plan"]["mirrors"] for c in synthetic) == [0, 1, 2]  # each real case once
    for case in synthetic:
        mirrored = real[case["plan"]["mirrors"]]["plan"]["diameters_mm"]
        assert case["plan"]["diameter_mm"] == pytest.approx(mirrored[0], abs=0.01)
        assert case["plan"]["tumor_type"] == match_tumor_type(mirrored[0] / 2, profile).tumor_type
        made = case["plan"]["synthesized_diameters_mm"]
        assert made, "the synthesis made no tumor"
        # tumors are measured as connected regions: neighbours may merge into one, and a tumor
        # clipped by a concave stretch of the liver may leave two pieces, so the number of
        # regions need not equal the planned count
        assert all(diameter > 0 for diameter in made)
        assert case["image_id"] and case["job_id"] and case["status"] == "ready"
    assert prepared["grid"]["spacing_mm"] == [3.0, 3.0, 3.0]  # the coarser of the two arms


def _reader_browser(server, invitation: dict) -> httpx.Client:
    """A cookie-holding client that opened the invitation link (as a browser would)."""
    client = server.client(follow_redirects=True)
    page = client.get(f"/r/{invitation['token']}")
    assert page.status_code == 200 and str(page.url).endswith("/read"), page.url
    assert invitation["token"] not in str(page.url)
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
    client.headers["X-CSRF-Token"] = csrf
    client.put("/api/v1/reader/profile", json={"experience_years": 7, "specialty": "radiology"})
    return client


def _shape(value) -> tuple:
    """What a per-case value looks like, without its content: type, length, token format."""
    if isinstance(value, str):
        masked = re.sub(r"[A-Za-z0-9_-]{24}", "<token>", value)
        return ("str", len(value), masked)
    return (type(value).__name__,)


def test_nothing_the_browser_receives_reveals_the_arm(server, study):
    import nibabel as nib

    study_owner, prepared = study
    invitation, _ = invite(server, study_owner, prepared["id"], "blinding reader")
    browser = _reader_browser(server, invitation)
    readings = readings_of(server, invitation["reader"]["id"])
    seen: dict[str, list[dict]] = {"Real tumors": [], "Synthetic tumors": []}
    for reading in readings:
        html = browser.get(f"/read/c/{reading['token']}")
        view = browser.get(f"/api/v1/reader/cases/{reading['token']}")
        image = browser.get(view.json()["image_url"])
        raw = image.content
        header = nib.Nifti1Header.from_fileobj(io.BytesIO(raw))
        seen[reading["arm"]].append({
            "html": html.text, "html_headers": _headers(html), "json": view.json(),
            "image_headers": _headers(image), "length": len(image.content),
            "nifti_header": raw[:352], "header_fields": {k: header[k].tobytes() for k in header.keys()},
        })  # fmt: skip
    everything = seen["Real tumors"] + seen["Synthetic tumors"]
    assert all(len(v) >= 3 for v in seen.values())
    for field in ("html", "html_headers", "image_headers", "length", "nifti_header",
                  "header_fields"):  # fmt: skip
        values = {repr(item[field]) for item in everything}
        assert len(values) == 1, f"{field} differs between cases"
    shape = prepared["grid"]["shape"]
    assert everything[0]["length"] == 352 + 2 * shape[0] * shape[1] * shape[2]  # uncompressed
    keys = {tuple(sorted(item["json"])) for item in everything}
    assert len(keys) == 1, "case JSON has different keys for different cases"
    for key in keys.pop():
        values = {repr(item["json"][key]) for item in everything}
        if key in PER_CASE_FIELDS:
            shapes = {arm: {_shape(item["json"][key]) for item in items if item["json"][key] is not None}
                      for arm, items in seen.items()}  # fmt: skip
            assert shapes["Real tumors"] == shapes["Synthetic tumors"], key
        else:
            assert len(values) == 1, f"case JSON field {key!r} differs between cases"
    assert not re.search(
        r"real tumors|synthetic tumors|truth|arm", repr([i["json"] for i in everything]), re.I
    )
    overview = browser.get("/api/v1/reader").json()
    assert "Real tumors" not in repr(overview) and "truth" not in repr(overview)


def _headers(response: httpx.Response) -> dict:
    return {k: v for k, v in response.headers.items() if k not in ("date", "set-cookie")}


def test_each_reader_has_an_own_recorded_order(server, study):
    study_owner, prepared = study
    orders = []
    for label in ("order reader 1", "order reader 2", "order reader 3"):
        invitation, _ = invite(server, study_owner, prepared["id"], label)
        readings = readings_of(server, invitation["reader"]["id"])
        assert len(readings) == 6 + 1  # six cases, one of them shown twice
        assert sum(r["reading"] for r in readings) == 1
        orders.append(tuple(r["case_id"] for r in readings))
        assert isinstance(invitation["reader"]["order_seed"], int)
    assert len(set(orders)) > 1


def test_answers_are_idempotent_and_final(server, study):
    study_owner, prepared = study
    _, reader = invite(server, study_owner, prepared["id"], "idempotent reader")
    token = reader.get("/api/v1/reader").json()["readings"][0]["token"]
    body = {"answer": "real", "confidence": 4, "click": [3, 4, 5], "time_ms": 2500}
    first = reader.put(f"/api/v1/reader/cases/{token}/answer", json=body)
    again = reader.put(f"/api/v1/reader/cases/{token}/answer", json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["progress"]["answered"] == 1
    changed = reader.put(
        f"/api/v1/reader/cases/{token}/answer", json={**body, "answer": "synthetic"}
    )
    assert changed.status_code == 409
    assert (
        changed.json()["detail"]
        == "answers are final in this study: this case was already answered"
    )
    malformed = reader.put(f"/api/v1/reader/cases/{token}/answer", json={"answer": "real"})
    assert malformed.status_code == 422  # checked before anything is compared or stored
    other = reader.get("/api/v1/reader").json()["readings"][1]["token"]
    no_confidence = reader.put(f"/api/v1/reader/cases/{other}/answer", json={"answer": "real"})
    assert no_confidence.status_code == 422
    assert (
        no_confidence.json()["detail"]
        == "this study asks for a confidence from 1 (a guess) to 5 (certain)"
    )
    outside = reader.put(f"/api/v1/reader/cases/{other}/answer",
                         json={"answer": "synthetic", "confidence": 2, "click": [999, 0, 0]})  # fmt: skip
    assert outside.status_code == 422 and "outside the image" in outside.json()["detail"]
    view = reader.get(f"/api/v1/reader/cases/{token}").json()
    assert view["answer"]["answer"] == "real" and view["can_answer"] is False


def test_bad_study_specs_get_clear_errors(study):
    study_owner, prepared = study
    base = {"title": "x", "arms": [{"name": "A", "truth": "real", "volumes": [{"image_id": 999999}]},
                                   {"name": "B", "truth": "synthetic", "volumes": [{"image_id": 1}]}]}  # fmt: skip
    answer = study_owner.client.post("/api/v1/studies", json=base)
    assert answer.status_code == 404
    assert answer.json()["detail"] == "arm 'A': volume 999999 not found"
    same = {**base, "arms": [base["arms"][1], {**base["arms"][1]}]}
    answer = study_owner.client.post("/api/v1/studies", json=same)
    assert (
        answer.status_code == 422 and answer.json()["detail"] == "the two arms need different names"
    )
    one_arm = {**base, "arms": base["arms"][:1]}
    assert study_owner.client.post("/api/v1/studies", json=one_arm).status_code == 422
    again = study_owner.client.post(f"/api/v1/studies/{prepared['id']}/prepare")
    assert again.status_code == 409
    assert "only a draft or failed study is prepared" in again.json()["detail"]


def test_cli_lists_invites_and_exports(server, study, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from app.cli import _register_command_groups, app

    _register_command_groups()
    monkeypatch.setenv("SYNTUMOR_DATABASE_URL", server.database_url)
    _, prepared = study
    runner = CliRunner()
    data = ["--data-dir", str(server.data_dir)]
    listed = runner.invoke(app, ["study", "list", *data])
    assert listed.exit_code == 0 and "Pipeline study" in listed.output
    invited = runner.invoke(app, ["study", "invite", str(prepared["id"]), "--label", "CLI reader",
                                  "--base-url", server.url, *data])  # fmt: skip
    assert invited.exit_code == 0, invited.output
    link = invited.output.strip().splitlines()[-1]
    assert link.startswith(f"{server.url}/r/rd_")
    reader = server.client(headers={"Authorization": f"Bearer {link.rsplit('/', 1)[1]}"})
    assert reader.get("/api/v1/reader").json()["reader"]["label"] == "CLI reader"
    exported = runner.invoke(
        app, ["study", "export", str(prepared["id"]), "--out", str(tmp_path), *data]
    )
    assert exported.exit_code == 0, exported.output
    names = sorted(p.name for p in tmp_path.iterdir())
    assert (
        f"study-{prepared['id']}-answers.csv" in names
        and f"study-{prepared['id']}-roc.png" in names
    )
    results = runner.invoke(app, ["study", "results", str(prepared["id"]), "--json", *data])
    assert results.exit_code == 0 and '"positive_class": "synthetic"' in results.output
    missing = runner.invoke(app, ["study", "results", "99999", *data])
    assert missing.exit_code == 2 and "study 99999 not found" in missing.output
