"""No cue but the image: what a reader's browser can see of the demo study separates no arm.

The demo study (``syntumor serve --demo``: real and synthetic tumors of LiTS case 117) is
seeded into a fresh data folder, and its demo reader fetches every case as the reader page
does. For each cue the browser sees beside the pixels (the file's byte length, the response
headers, the NIfTI header bytes and fields, the URL, the response time in 50 ms buckets) the
real-vs-synthetic AUC is computed with scikit-learn. A deterministic cue must give exactly
0.5: the same value for every case.
"""

from __future__ import annotations

import io
import re
import statistics
import time

import pytest
from sklearn.metrics import roc_auc_score

from tests.live_server import LiveServer

TIME_BUCKET_MS = 50
TIMING_REPEATS = 3
DETERMINISTIC = ("byte_length", "headers", "nifti_header_bytes", "nifti_fields", "url_length")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A server over a data folder holding the demo study; (server, invitation token)."""
    from app.demo_seed import seed_demo
    from app.settings import Settings

    folder = tmp_path_factory.mktemp("demo")
    live = LiveServer(folder)
    lines = seed_demo(Settings(data_dir=folder, database_url=live.database_url))
    links = [found.group(1) for line in lines if (found := re.search(r"/r/(\S+)", line))]
    if not links:
        pytest.skip(f"the demo study was not seeded: {lines}")
    live.start()
    yield live, links[0]
    live.close()


def _truths(server: LiveServer) -> dict[str, str]:
    """Reading token → truth of its case, for the demo reader's first showings."""
    from sqlalchemy import select

    from app.db.study_tables import StudyReader

    with server.session() as session:
        reader = session.scalar(select(StudyReader).where(StudyReader.label == "Demo reader"))
        return {r.token: r.case.arm.truth for r in reader.readings
                if r.reading == 0 and r.case.role == "test"}  # fmt: skip


def _header_fields(data: bytes) -> str:
    import nibabel as nib

    header = nib.Nifti1Header.from_fileobj(io.BytesIO(data))
    return repr({key: header[key].tobytes() for key in header.keys()})


def _cues(browser, token: str) -> dict:
    view = browser.get(f"/api/v1/reader/cases/{token}")
    assert view.status_code == 200, view.text
    url = view.json()["image_url"]
    times, image = [], None
    for _ in range(TIMING_REPEATS):
        start = time.perf_counter()
        image = browser.get(url)
        times.append(1000 * (time.perf_counter() - start))
    assert image.status_code == 200
    headers = {k: v for k, v in image.headers.items() if k not in ("date", "set-cookie")}
    return {
        "byte_length": len(image.content),
        "headers": repr(sorted(headers.items())),
        "nifti_header_bytes": image.content[:352],
        "nifti_fields": _header_fields(image.content),
        "url_length": len(url),
        "time_bucket": int(statistics.median(times) // TIME_BUCKET_MS),
    }


def _auc(truths: list[str], values: list) -> float:
    """AUC of a cue for "synthetic": values ranked by their sorted order (any type)."""
    rank = {value: index for index, value in enumerate(sorted(set(values)))}
    return float(roc_auc_score([t == "synthetic" for t in truths], [rank[v] for v in values]))


def test_no_cue_a_browser_sees_separates_the_arms(demo):
    server, token = demo
    truths = _truths(server)
    assert sorted(set(truths.values())) == ["real", "synthetic"] and len(truths) >= 10
    with server.client(follow_redirects=True) as browser:
        opened = browser.get(f"/r/{token}")
        assert opened.status_code == 200, opened.text[:300]
        seen = {reading: _cues(browser, reading) for reading in truths}
    order = list(truths)
    labels = [truths[t] for t in order]
    aucs = {cue: _auc(labels, [seen[t][cue] for t in order]) for cue in seen[order[0]]}
    for cue in DETERMINISTIC:
        assert aucs[cue] == 0.5, f"{cue} separates the arms: AUC {aucs[cue]}"
        assert len({repr(seen[t][cue]) for t in order}) == 1, f"{cue} differs between cases"
    # Timing is not deterministic; a cue would order every case of one arm first.
    assert 0.0 < aucs["time_bucket"] < 1.0, f"response times separate the arms: {aucs}"
    first = seen[order[0]]
    assert first["nifti_header_bytes"][:4] == (348).to_bytes(4, "little")  # plain .nii
