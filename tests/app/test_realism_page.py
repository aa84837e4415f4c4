"""``/realism``: the published realism report for admins and researchers (issue 16)."""

from __future__ import annotations

from contextlib import closing

import pytest

from syntumor_core.realism.report import save_report_folder
from syntumor_core.realism.score import score_realism
from tests.realism_support import make_lesion_case


@pytest.fixture(scope="module")
def researcher(server):
    username, password = server.create_user("researcher")
    client = server.login(username, password)
    yield client
    client.close()


@pytest.fixture(scope="module")
def published(server):
    report = score_realism(
        make_lesion_case(), profile="paper", n_per_type=1, tumor_types=("small",), min_voxels=50
    )
    save_report_folder(
        [report],
        server.data_dir / "realism",
        extra={
            "created": "2026-12-07T05:00:00+00:00",
            "command": {"n": 1, "seed": 0, "min_voxels": 50},
        },
    )
    return report


def test_without_a_report_the_page_says_how_to_make_one(researcher):
    answer = researcher.get("/realism")
    assert answer.status_code == 200
    assert 'id="realism-empty"' in answer.text
    assert "syntumor realism --publish" in answer.text


def test_the_published_report_is_shown_with_its_plots(researcher, published):
    answer = researcher.get("/realism")
    assert answer.status_code == 200
    assert 'data-profile="paper"' in answer.text
    assert published.reader.describe() in answer.text
    assert "contrast_hu (HU)" in answer.text and "made 2026-12-07T05:00:00+00:00" in answer.text
    for name in ("histograms_paper.png", "gallery_paper.png"):
        assert f'src="/realism/plots/{name}"' in answer.text
        image = researcher.get(f"/realism/plots/{name}")
        assert image.status_code == 200 and image.content[:4] == b"\x89PNG"


@pytest.mark.parametrize("name", ["realism.json", "..%2Frealism.json", "gallery_nothing.png"])
def test_only_published_plots_are_served(researcher, published, name):
    assert researcher.get(f"/realism/plots/{name}").status_code == 404


def test_readers_and_visitors_do_not_see_it(server):
    with server.client() as client:
        answer = client.get("/realism")
    assert answer.status_code == 303 and answer.headers["location"] == "/login?next=/realism"
    with closing(server.login(*server.create_user("reader"))) as client:
        assert client.get("/realism").status_code == 403
        assert client.get("/realism/plots/gallery_paper.png").status_code == 403
