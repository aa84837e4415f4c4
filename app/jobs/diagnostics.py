"""A job kind for checking the job machinery itself: ``sleep``.

A ``sleep`` job waits ``seconds`` (default 0) in small steps, reporting progress and noticing
cancellation at each step, and leaves a trace that it ran: an empty file
``results/<job id>/ran-<token>`` (one per run, so a job that ran twice has two) and the
worker's id in its result. No route creates it; tests and operators queue it directly in the
database, e.g. to see that several ``syntumor worker`` processes never run a job twice.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from app.jobs.worker import JobContext, JobFailed, job_handler

MAX_SLEEP_S = 3600.0
STEP_S = 0.05


def _seconds(params: dict[str, Any]) -> float:
    value = params.get("seconds", 0.0)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise JobFailed(f"seconds must be a number, got {value!r}") from None
    if not 0.0 <= seconds <= MAX_SLEEP_S:
        raise JobFailed(f"seconds must be in [0, {MAX_SLEEP_S:g}], got {seconds:g}")
    return seconds


@job_handler("sleep")
def run_sleep(context: JobContext) -> dict[str, Any]:
    """Wait ``params["seconds"]`` (in steps of 50 ms), then record which worker ran the job."""
    seconds = _seconds(context.params)
    marker = context.storage.result_dir(context.job_id) / f"ran-{uuid.uuid4().hex}"
    marker.touch()
    started = time.monotonic()
    while (waited := time.monotonic() - started) < seconds:
        context.progress(waited / seconds, f"sleeping {waited:.1f} of {seconds:g} s")
        time.sleep(min(STEP_S, seconds - waited))
    context.check_cancelled()
    return {"worker_id": context.worker_id, "marker": marker.name, "seconds": seconds}
