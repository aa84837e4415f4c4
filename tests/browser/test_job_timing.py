"""The job widget says where a job stands: "queued — 2nd in line", "about 40 s left".

A server without a worker keeps the jobs where the test puts them: three finished segmentations
of 40 s make the typical duration, and a job is set running by hand (half done after 40 s).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from app.db.tables import Job
from tests.app.api_support import ct_array, nifti_bytes
from tests.browser.conftest import log_in, screenshot
from tests.live_server import LiveServer


@pytest.fixture(scope="module")
def queue_server(tmp_path_factory):
    live = LiveServer(
        tmp_path_factory.mktemp("timing"), env={"SYNTUMOR_EMBEDDED_WORKER": "false"}
    ).start()
    yield live
    live.close()


def _finished_segment_jobs(server, seconds: float, count: int) -> None:
    end = datetime.now(UTC) - timedelta(minutes=5)
    with server.session() as session:
        session.add_all(
            Job(kind="segment", status="succeeded", params={}, progress=1.0,
                started_at=end - timedelta(seconds=seconds), finished_at=end)
            for _ in range(count)
        )  # fmt: skip
        session.commit()


def _set_running(server, job_id: int, *, progress: float, elapsed_s: float) -> None:
    with server.session() as session:
        job = session.get(Job, job_id)
        job.status, job.progress, job.message = "running", progress, "segmenting"
        job.started_at = datetime.now(UTC) - timedelta(seconds=elapsed_s)
        session.commit()


def test_queue_position_and_time_left_in_the_job_widgets(page, queue_server):
    researcher = queue_server.create_user("researcher")
    client = queue_server.login(*researcher)
    image = client.post("/api/v1/volumes", params={"name": "ct.nii.gz"},
                        content=nifti_bytes(ct_array(1)))  # fmt: skip
    assert image.status_code == 201, image.text
    image_id = image.json()["id"]
    _finished_segment_jobs(queue_server, 40.0, 3)
    first = client.post("/api/v1/segmentations", json={"image_id": image_id}).json()
    assert first["job"]["queue_position"] == 1 and first["job"]["eta_seconds"] == 40

    log_in(page, queue_server, *researcher)
    page.goto(f"{queue_server.url}/volumes/{image_id}")
    expect(page.locator("#segment-button")).to_be_enabled()
    page.click("#segment-button")  # the second in line
    timing = page.locator("#segment-progress .job-eta")
    expect(timing).to_have_text("queued — 2nd in line · about 80 s left")
    expect(page.locator("#segment-progress .badge")).to_have_text("queued")
    screenshot(page, "job-timing-volume-page-queued")

    other = page.context.new_page()
    other.goto(f"{queue_server.url}/segmentations/{first['id']}")
    other_timing = other.locator("#segment-progress .job-eta")
    expect(other_timing).to_have_text("queued — next in line · about 40 s left")
    expect(other.locator("#segment-progress button.cancel-job")).to_be_visible()

    _set_running(queue_server, first["job"]["id"], progress=0.5, elapsed_s=40.0)
    expect(other_timing).to_have_text(re.compile(r"^about \d+ s left$"), timeout=15_000)
    expect(other.locator("#segment-progress")).to_have_attribute("data-status", "running")
    screenshot(other, "job-timing-segmentation-page-running")
    # the volume page's job moved up: the running one is no longer in the queue
    expect(timing).to_have_text("queued — next in line · about 40 s left", timeout=15_000)
    client.close()
