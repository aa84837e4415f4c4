"""Admin training and evaluation jobs end to end, on a real server with real child processes.

An admin trains a 20-step U-Net on phantoms on the CPU and follows its server-sent events; the
checkpoint becomes a model that segments an uploaded CT and is evaluated on a generated phantom.
A long run is stopped: the job is cancelled within 10 s and its whole process tree is gone.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.app.admin_support import (
    LONG_TRAINING,
    TINY_TRAINING,
    admin_token,
    bearer,
    job,
    kill_leftovers,
    process_gone,
    processes_of,
    read_events,
    training_started,
    tree_pids,
    wait_for,
)

TRAIN_TIMEOUT_S = 500  # 20 tiny steps: ~1 min on an idle 2-core CPU, several on a busy one
# Parity mode: the plainest path (no coarse pass, never compiled); these tests are about jobs.
MODE = "parity"


@pytest.fixture(scope="module")
def admin(server):
    client = bearer(server, admin_token(server))
    yield client
    client.close()
    kill_leftovers(server.data_dir)


@pytest.fixture(scope="module")
def trained(server, admin) -> dict:
    """A finished tiny training job, and the events its page received."""
    answer = admin.post(
        "/api/v1/admin/training-jobs", json={**TINY_TRAINING, "model_name": "e2e-unet"}
    )
    assert answer.status_code == 202, answer.text
    created = answer.json()
    assert created["status"] == "queued" and created["kind"] == "train"
    events = read_events(
        admin, f"/api/v1/admin/jobs/{created['id']}/events", timeout=TRAIN_TIMEOUT_S
    )
    return {"id": created["id"], "events": events, "job": job(admin, created["id"])}


def test_training_streams_progress_and_curve_points(trained):
    events = trained["events"]
    assert events[-1][0] == "end", f"no end event; last: {events[-3:]}"
    final = events[-1][1]
    assert final["status"] == "succeeded", f"{final['error']}\n{final['log_tail']}"
    states = [data for name, data in events if name == "state"]
    progress = [state["progress"] for state in states]
    assert any(0.0 < value < 1.0 for value in progress), progress
    assert progress == sorted(progress)
    assert any(state["message"].startswith("step ") for state in states)
    points = [point for name, data in events if name == "points" for point in data["points"]]
    steps = [point["step"] for point in points if point["event"] == "train"]
    assert steps == list(range(1, 21))
    assert all(point["loss"] is not None for point in points if point["event"] == "train")
    validations = [point for point in points if point["event"] == "validation"]
    assert [point["step"] for point in validations] == [10, 20]
    assert all(0.0 <= point["liver_dice"] <= 1.0 for point in validations)
    assert len({point["id"] for point in points}) == len(points)  # each point sent once


def test_training_registers_a_model_with_a_card(server, admin, trained):
    result = trained["job"]["result"]
    assert result["model"] == "e2e-unet" and result["steps"] == 20
    run = trained["job"]["run"]
    assert run["device_info"][0]["name"] == "CPU" and run["exit_code"] == 0
    assert " -m app.cli train " in run["command"] and "--max-steps 20" in run["command"]
    models = {item["name"]: item for item in admin.get("/api/v1/models").json()["items"]}
    assert models["e2e-unet"]["status"] == "local" and models["e2e-unet"]["arch"] == "unet"
    assert models["e2e-unet"]["tumors"] == "synthetic"
    folder = Path(server.data_dir) / "models" / "e2e-unet"
    card = (folder / "MODEL_CARD.md").read_text()
    assert "# Model card: `e2e-unet`" in card and "| max_steps | `20` |" in card
    assert "best validation score" in card and '- source: `"phantoms"`' in card
    assert result["model_card"] == card


def test_trained_model_segments_an_uploaded_ct(server, admin, trained, small_phantom_files):
    image_path, _ = small_phantom_files
    uploaded = admin.post("/api/v1/volumes", params={"name": image_path.name},
                          content=image_path.read_bytes())  # fmt: skip
    assert uploaded.status_code in (200, 201), uploaded.text
    answer = admin.post(
        "/api/v1/segmentations",
        json={"image_id": uploaded.json()["id"], "model": "e2e-unet", "overlap": 0.0, "mode": MODE},
    )
    assert answer.status_code == 202, answer.text
    done = server.wait_for_job(admin, answer.json()["job"]["id"], timeout=600)
    assert done["status"] == "succeeded", done["error"]


def test_evaluation_of_the_trained_model(server, admin, trained):
    body = {
        "model": "e2e-unet",
        "dataset": {"source": "phantoms", "phantoms": 1, "phantom_shape": [64, 56, 40],
                    "phantom_spacing": 4.0},
        "overlap": 0.0,
        "mode": MODE,
    }  # fmt: skip
    answer = admin.post("/api/v1/admin/evaluation-jobs", json=body)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    done = server.wait_for_job(admin, job_id, timeout=600)
    assert done["status"] == "succeeded", f"{done['error']}\n{job(admin, job_id)['log_tail']}"
    results = admin.get(f"/api/v1/admin/jobs/{job_id}/evaluation").json()
    assert set(results["means"]) == {"liver_dice", "liver_nsd", "tumor_dice", "tumor_nsd"}
    assert 0.0 <= results["means"]["liver_dice"]["mean"] <= 1.0
    assert [case["name"] for case in results["cases"]] == ["eval-phantom-200000"]
    detection = results["detection"]
    assert len(detection["sensitivity_per_bin"]) == len(results["size_bins"]) == 5
    assert detection["scans"] == 1 and detection["lesions_total"] >= 1
    assert results["selection_known"] is True
    run_dir = Path(job(admin, job_id)["run"]["run_dir"])
    assert (run_dir / "summary.json").is_file() and (run_dir / "metrics.csv").is_file()
    assert (run_dir / "predictions" / "eval-phantom-200000.nii.gz").is_file()


def test_stop_ends_the_job_and_its_process_tree(server, admin, trained):
    body = {**LONG_TRAINING, "workers": 1}  # a data-loader worker: a tree, not one process
    answer = admin.post("/api/v1/admin/training-jobs", json=body)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    state = wait_for(lambda: training_started(admin, job_id, points=2), 600, "training steps")
    pid = state["run"]["pid"]
    pids = tree_pids(pid)
    assert pid in pids
    started = time.monotonic()
    stopped = admin.post(f"/api/v1/admin/jobs/{job_id}/stop")
    assert stopped.status_code == 200, stopped.text
    final = wait_for(
        lambda: (lambda s: s if s["finished"] else None)(job(admin, job_id)), 10, "the stop"
    )
    assert time.monotonic() - started < 10
    assert final["status"] == "cancelled" and final["error"] == "cancelled by request"
    assert all(process_gone(each) for each in pids), [p for p in pids if not process_gone(p)]
    assert processes_of(server.data_dir / "results" / str(job_id)) == []
    again = admin.post(f"/api/v1/admin/jobs/{job_id}/stop")
    assert again.status_code == 409
    assert again.json()["detail"] == f"job {job_id} has already cancelled"


def test_rerun_queues_the_same_configuration(server, admin, trained):
    answer = admin.post(f"/api/v1/admin/jobs/{trained['id']}/rerun")
    assert answer.status_code == 202, answer.text
    rerun = answer.json()
    assert rerun["id"] != trained["id"] and rerun["params"] == trained["job"]["params"]
    stopped = admin.post(f"/api/v1/admin/jobs/{rerun['id']}/stop")
    assert stopped.status_code == 200
    final = wait_for(
        lambda: (lambda s: s if s["finished"] else None)(job(admin, rerun["id"])), 15, "the stop"
    )
    assert final["status"] == "cancelled"
