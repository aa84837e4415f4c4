"""The admin's live job page in a real browser: a training started from the form draws its loss
curve as server-sent events bring points (the canvas changes, the number of points grows), the
Stop button cancels it and its processes end; an evaluation started from its form shows its
per-case table and the detection chart. Screenshots go to tests/artifacts/admin-*.png."""

from __future__ import annotations

import psutil
import pytest

from tests.browser.conftest import log_in, screenshot

TRAINING_FORM = {
    "phantoms": "2",
    "val_phantoms": "1",
    "phantom_shape": "64,56,40",
    "phantom_spacing": "4",
    "epochs": "5000",
    "warmup_epochs": "1",
    "val_every": "2",
    "max_steps": "100000",
    "batch_size": "1",
    "roi_size": "32",
    "spacing_mm": "4",
    "workers": "0",
    "threads": "1",
}


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _points(page, chart: str) -> int:
    return int(page.get_attribute(f"#{chart}", "data-points") or 0)


def _pixels(page, chart: str) -> str:
    return page.evaluate(f"document.getElementById('{chart}').toDataURL()")


@pytest.fixture
def admin_page(page, web_server):
    log_in(page, web_server, *web_server.create_user("admin"))
    return page


def test_curves_update_live_and_stop_cancels(admin_page, web_server):
    page = admin_page
    page.goto(f"{web_server.url}/admin/train")
    for name, value in TRAINING_FORM.items():
        page.fill(f"#train-form [name={name}]", value)
    page.fill("#train-form [name=type-tiny]", "0")
    screenshot(page, "admin-train-form")
    page.click("#train-form button[type=submit]")
    page.wait_for_url("**/admin/jobs/*")
    job_id = int(page.url.rstrip("/").rsplit("/", 1)[-1])

    # Predicates as functions: evaluated once, so the pages' CSP (no 'unsafe-eval') allows them.
    page.wait_for_function("() => Number(document.getElementById('loss-chart').dataset.points) >= 2",
                           timeout=600_000)  # fmt: skip
    before_points, before_pixels = _points(page, "loss-chart"), _pixels(page, "loss-chart")
    page.wait_for_function(
        f"() => Number(document.getElementById('loss-chart').dataset.points) >= {before_points + 2}",
        timeout=180_000,
    )
    assert _pixels(page, "loss-chart") != before_pixels
    page.wait_for_function("() => Number(document.getElementById('dice-chart').dataset.points) >= 2",
                           timeout=300_000)  # fmt: skip
    assert "step " in page.inner_text("#job-message") or "validation" in page.inner_text(
        "#job-message"
    )
    assert page.inner_text("#device-list") == "CPU"
    assert "left" in page.inner_text("#job-eta")
    state = page.evaluate(f"fetch('/api/v1/admin/jobs/{job_id}').then((r) => r.json())")
    assert state["params"]["syn_types"]["tiny"] == 0.0
    pid = state["run"]["pid"]
    root = psutil.Process(pid)
    pids = [pid, *(child.pid for child in root.children(recursive=True))]
    screenshot(page, "admin-job-running")

    page.click("#stop-button")
    page.wait_for_selector("body[data-job-status=cancelled]", timeout=15_000)
    assert page.inner_text("#job-status") == "cancelled"
    assert page.is_disabled("#stop-button")
    assert all(_gone(each) for each in pids)
    screenshot(page, "admin-job-cancelled")

    page.goto(f"{web_server.url}/admin")
    assert page.inner_text(f"tr[data-job-id='{job_id}'] .badge") == "cancelled"
    screenshot(page, "admin-jobs")


def test_evaluation_results_page(admin_page, web_server):
    page = admin_page
    page.goto(f"{web_server.url}/admin/evaluate?model=demo")
    assert page.input_value("#evaluate-form [name=model]") == "demo"
    page.fill("#evaluate-form [name=phantoms]", "1")
    page.fill("#evaluate-form [name=phantom_shape]", "64,56,40")
    page.fill("#evaluate-form [name=phantom_spacing]", "4")
    page.fill("#evaluate-form [name=overlap]", "0")
    page.select_option(
        "#evaluate-form [name=mode]", "parity"
    )  # the plainest path: the test is about the page, not the speed
    page.click("#evaluate-form button[type=submit]")
    page.wait_for_url("**/admin/jobs/*")
    page.wait_for_selector("body[data-evaluation-shown=yes]", timeout=600_000)
    assert page.inner_text("#job-status") == "succeeded"
    rows = page.locator("#eval-cases tr")
    assert rows.count() == 1 and "eval-phantom-200000" in rows.first.inner_text()
    assert page.get_attribute("#sensitivity-chart", "data-bars") is not None
    assert "unknown" in page.inner_text("#eval-facts")  # the demo model was not trained here
    screenshot(page, "admin-evaluation-results")


TRAINING_PARAMS = {
    "arch": "unet",
    "dataset": {"source": "phantoms", "phantoms": 2, "val_phantoms": 1},
    "syn": True,
    "syn_organ": "liver",
    "syn_profile": "paper",
    "syn_prob": 0.9,
    "epochs": 20,
    "max_steps": 20,
}
FAKE_NVIDIA_SMI = """#!/bin/sh
echo "NVIDIA H100 80GB HBM3, 1234 MiB, 81559 MiB"
echo "NVIDIA H100 80GB HBM3, 40960 MiB, 81559 MiB"
"""


def test_gpu_names_and_memory_are_shown(page, tmp_path):
    """There is no GPU here: a fake nvidia-smi on the server's PATH stands in for two."""
    import os
    import socket

    from app.db.tables import Job, JobStatus
    from app.db.training_tables import TrainingRun
    from tests.live_server import LiveServer

    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text(FAKE_NVIDIA_SMI)
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:{os.environ['PATH']}", "SYNTUMOR_EMBEDDED_WORKER": "false"}
    server = LiveServer(tmp_path / "data", env=env).start()
    try:
        with server.session() as session:  # a job holding GPU 1 (nothing runs it: no worker)
            params = {**TRAINING_PARAMS, "gpus": 1}
            job = Job(kind="train", status=JobStatus.RUNNING, params=params, message="step 3")
            session.add(job)
            session.flush()
            session.add(TrainingRun(job_id=job.id, kind="train", run_dir=str(tmp_path),
                                    devices=[1], host=socket.gethostname()))  # fmt: skip
            session.commit()
            job_id = job.id
        log_in(page, server, *server.create_user("admin"))
        page.goto(f"{server.url}/admin")
        gpus = page.inner_text("#gpu-list")
        assert "GPU 0: NVIDIA H100 80GB HBM3 — 1.2 / 79.6 GiB in use" in gpus
        assert f"GPU 1: NVIDIA H100 80GB HBM3 — 40.0 / 79.6 GiB in use · job #{job_id}" in gpus
        assert "GPU 0: NVIDIA H100 80GB HBM3 — 1.2 / 79.6 GiB in use · free" in gpus
        screenshot(page, "admin-gpus")
        page.goto(f"{server.url}/admin/train")
        assert page.locator("#train-form [name=gpus] option").all_inner_texts() == [
            "none: CPU", "1 GPU", "2 GPUs (torchrun)"]  # fmt: skip
        page.goto(f"{server.url}/admin/jobs/{job_id}")
        assert page.inner_text("#device-list") == (
            "GPU 1: NVIDIA H100 80GB HBM3 — 40.0 / 79.6 GiB in use"
        )
        screenshot(page, "admin-job-gpu")
    finally:
        server.close()
