"""How long a reader waits between cases, and what each reader request costs the server.

Starts a SynTumor server on a temporary data folder, builds a ready study of ``--cases`` phantom
cases (half with tumors made beforehand as the "real" arm, half synthesized beforehand as the
"synthetic" arm: the study's own preparation is not timed), and lets one reader take it in
Chromium (Playwright, Debian's chromium) by mouse: answer, confidence, Submit. The reader page
marks ``reader:submit`` when Submit is pressed and ``reader:drawn`` when the next case's first
frame has been drawn (two animation frames after NiiVue drew it); the table gives the median
and 95th percentile of the wait over the study's transitions.

Then a second reader's requests are sent by a program (httpx, bearer token) and the server
process's CPU time (user + system, all threads; psutil) is read before and after each batch:
CPU milliseconds per request, per route.

    .venv/bin/python benchmarks/reader_latency.py                   # 20 cases, 88 mm boxes
    .venv/bin/python benchmarks/reader_latency.py --cases 20 --box-mm 160

Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.app.studies_support import (  # noqa: E402
    SHAPE_A,
    SPACING_A,
    invite,
    owner,
    phantom_case,
    readings_of,
    store_case,
    wait_ready,
)
from tests.browser.conftest import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402
from tests.live_server import LiveServer  # noqa: E402


def build_study(server: LiveServer, n_cases: int, box_mm: float) -> tuple[object, int]:
    """A ready study of ``n_cases`` stored phantom cases (two arms of equal size)."""
    study_owner = owner(server)
    half = n_cases // 2
    arms = []
    for arm, truth in enumerate(("real", "synthetic")):
        ids = [store_case(server, *phantom_case(100 * arm + i, SHAPE_A, SPACING_A,
                                                tumor_seed=1000 * arm + i), f"{truth} {i}")[0]
               for i in range(half)]  # fmt: skip
        arms.append({"name": truth, "truth": truth, "volumes": [{"image_id": i} for i in ids]})
    spec = {"title": "Latency study", "arms": arms, "box_mm": box_mm}
    checks = study_owner.client.post("/api/v1/studies/checks", json=spec).json()
    spec["acknowledge"] = [c["code"] for c in checks["checks"] if c["level"] == "warning"]
    created = study_owner.client.post("/api/v1/studies", json=spec)
    created.raise_for_status()
    study = wait_ready(study_owner, created.json()["id"])
    if study["status"] != "ready":
        raise RuntimeError(f"study not ready: {study['status_message']}")
    return study_owner, study["id"]


def read_in_browser(server: LiveServer, invitation: dict, n_cases: int) -> tuple[list[float], int]:
    """Take the study by mouse; returns the Submit → next-case-drawn waits (ms), image bytes."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.set_default_timeout(60_000)
        page.goto(invitation["invitation_url"])
        page.fill("input[name=experience_years]", "5")
        page.fill("input[name=specialty]", "radiology")
        page.locator("form button[type=submit]").click()
        page.locator("#start").click()
        for index in range(n_cases):
            page.wait_for_function(
                "(n) => performance.getEntriesByName('reader:drawn').length >= n", arg=index + 1
            )
            expect(page.locator("#position")).to_have_text(f"Case {index + 1} of {n_cases}")
            if index == n_cases - 1:  # the last Submit leaves the page: read the marks first
                marks = page.evaluate(
                    """() => ['reader:submit', 'reader:drawn'].map(
                        (name) => performance.getEntriesByName(name).map((e) => e.startTime))"""
                )
                image_bytes = page.evaluate(
                    """() => performance.getEntriesByType('resource')
                        .filter((e) => e.name.includes('/image.nii'))
                        .map((e) => e.decodedBodySize)[0] || 0"""
                )
            page.locator('button[data-answer="real"]').click()
            page.locator('button[data-confidence="3"]').click()
            page.locator("#submit").click()
        page.wait_for_url("**/read/done")
        browser.close()
    submits, drawn = marks
    waits = [min(d for d in drawn if d > s) - s for s in submits if any(d > s for d in drawn)]
    return waits, image_bytes


def server_cpu_per_request(server: LiveServer, reader, readings: list[dict]) -> list[tuple]:
    """CPU ms (server process, all threads) and wall ms per request, per reader route."""
    process = psutil.Process(server.process.pid)

    def cpu() -> float:
        times = process.cpu_times()
        return times.user + times.system

    routes = [
        ("GET /api/v1/reader (overview)", lambda r: reader.get("/api/v1/reader")),
        ("GET /api/v1/reader/cases/{token}", lambda r: reader.get(f"/api/v1/reader/cases/{r['token']}")),
        ("GET /api/v1/reader/cases/{token}/image.nii", lambda r: reader.get(f"/api/v1/reader/cases/{r['token']}/image.nii")),
        ("PUT /api/v1/reader/cases/{token}/answer", lambda r: reader.put(
            f"/api/v1/reader/cases/{r['token']}/answer", json={"answer": "real", "confidence": 3, "time_ms": 1000})),
    ]  # fmt: skip
    rows = []
    for name, call in routes:
        call(readings[0])  # warm
        before, started = cpu(), time.perf_counter()
        for reading in readings[1:]:
            response = call(reading)
            assert response.status_code < 300, (name, response.status_code, response.text[:200])
        count = len(readings) - 1
        rows.append((name, count, 1000 * (cpu() - before) / count,
                     1000 * (time.perf_counter() - started) / count))  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=20, help="cases in the study (even)")
    parser.add_argument("--box-mm", type=float, default=88.0, help="field of view shown per case")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="syntumor-latency-") as folder:
        server = LiveServer(Path(folder)).start()
        try:
            study_owner, study_id = build_study(server, args.cases, args.box_mm)
            invitation, _ = invite(server, study_owner, study_id, "Browser reader")
            waits, image_bytes = read_in_browser(server, invitation, args.cases)
            program, reader = invite(server, study_owner, study_id, "Program reader")
            cpu_rows = server_cpu_per_request(
                server, reader, readings_of(server, program["reader"]["id"])
            )
        finally:
            server.close()
    print(f"\n### Submit → next case drawn ({args.cases}-case study, {args.box_mm:g} mm boxes, "
          f"{image_bytes / 1e6:.2f} MB per case file)\n")  # fmt: skip
    print("| transitions | median ms | p95 ms | max ms |")
    print("|---|---|---|---|")
    p95 = float(np.percentile(waits, 95))
    print(f"| {len(waits)} | {statistics.median(waits):.0f} | {p95:.0f} | {max(waits):.0f} |")
    print("\n### Server cost per reader request\n")
    print("| route | requests | server CPU ms / request | wall ms / request |")
    print("|---|---|---|---|")
    for name, count, cpu_ms, wall_ms in cpu_rows:
        print(f"| `{name}` | {count} | {cpu_ms:.1f} | {wall_ms:.1f} |")


if __name__ == "__main__":
    main()
