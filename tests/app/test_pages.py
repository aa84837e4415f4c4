"""The HTML pages over HTTP (no browser): status codes, roles, CSRF fields, embedded data."""

from __future__ import annotations

import json
import re
from contextlib import closing

import pytest

WORK_PAGES = ("/upload", "/volumes", "/synthesize", "/jobs")


@pytest.fixture(scope="module")
def researcher(server):
    username, password = server.create_user("researcher")
    client = server.login(username, password)
    yield client
    client.close()


@pytest.fixture(scope="module")
def phantom(server, researcher, small_phantom_files) -> dict:
    image_path, labels_path = small_phantom_files
    image = researcher.post(
        "/api/v1/volumes", params={"name": image_path.name}, content=image_path.read_bytes()
    )
    assert image.status_code in (200, 201), image.text
    labels = researcher.post(
        "/api/v1/volumes",
        params={"name": labels_path.name, "kind": "label", "image_id": image.json()["id"]},
        content=labels_path.read_bytes(),
    )
    assert labels.status_code in (200, 201), labels.text
    return {"image": image.json(), "labels": labels.json()}


def page_data(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', html, re.S)
    assert found, "the page embeds no page-data"
    return json.loads(found.group(1))


def csrf_meta(html: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert found, "no csrf-token meta"
    return found.group(1)


@pytest.mark.parametrize("path", [*WORK_PAGES, "/volumes/1", "/syntheses/1", "/segmentations/1"])
def test_anonymous_visitors_are_sent_to_login(server, path):
    with server.client() as client:
        answer = client.get(path)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/login?next={path}"


def test_the_login_redirect_keeps_the_query(server):
    with server.client() as client:
        answer = client.get("/synthesize", params={"image_id": 7})
    assert answer.headers["location"] == "/login?next=/synthesize%3Fimage_id%3D7"


def test_readers_get_a_403_page(server):
    with closing(server.login(*server.create_user("reader"))) as client:
        for path in (*WORK_PAGES, "/volumes/1", "/segmentations/1", "/syntheses/1"):
            answer = client.get(path)
            assert answer.status_code == 403, path
            assert "this page needs the role admin or researcher" in answer.text
            assert "text/html" in answer.headers["content-type"]


@pytest.mark.parametrize("path", WORK_PAGES)
def test_work_pages_render_with_the_csrf_token(researcher, phantom, path):
    answer = researcher.get(path)
    assert answer.status_code == 200, answer.text
    token = csrf_meta(answer.text)
    if path in ("/upload", "/synthesize"):
        assert f'<input type="hidden" name="csrf_token" value="{token}">' in answer.text
    if path != "/volumes":  # the list is plain HTML
        assert '<script type="module"' in answer.text
    assert " onclick=" not in answer.text and " onchange=" not in answer.text


def test_volume_list_links_the_image_not_its_labels(researcher, phantom):
    html = researcher.get("/volumes").text
    assert f'href="/volumes/{phantom["image"]["id"]}"' in html
    assert f'href="/volumes/{phantom["labels"]["id"]}"' not in html
    assert "96 × 80 × 48" in html and "2.50 × 2.50 × 2.50" in html


def test_volume_list_pages_are_clamped(researcher, phantom):
    answer = researcher.get("/volumes", params={"page": 99})
    assert answer.status_code == 200
    assert f'href="/volumes/{phantom["image"]["id"]}"' in answer.text
    assert researcher.get("/volumes", params={"page": 0}).status_code == 422


def test_volume_page_embeds_the_volume_and_its_label_maps(researcher, phantom):
    image_id = phantom["image"]["id"]
    answer = researcher.get(f"/volumes/{image_id}")
    assert answer.status_code == 200
    data = page_data(answer.text)
    assert data["volume"]["id"] == image_id
    assert [label["id"] for label in data["volume"]["label_maps"]] == [phantom["labels"]["id"]]
    assert data["volume"]["download_url"] == f"/api/v1/volumes/{image_id}/file"
    assert f'href="/synthesize?image_id={image_id}"' in answer.text
    assert 'src="/static/js/volume_page.js"' in answer.text


def test_a_label_map_opens_on_its_image(researcher, phantom):
    label_id, image_id = phantom["labels"]["id"], phantom["image"]["id"]
    answer = researcher.get(f"/volumes/{label_id}")
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/volumes/{image_id}?overlay={label_id}"
    assert page_data(researcher.get(answer.headers["location"]).text)["overlay"] == label_id


def test_segment_link_goes_to_the_form_on_the_volume_page(researcher, phantom):
    image_id = phantom["image"]["id"]
    answer = researcher.get(f"/volumes/{image_id}/segment")
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/volumes/{image_id}#segment"


def test_missing_things_are_404_pages(researcher):
    for path in ("/volumes/999999", "/segmentations/999999", "/syntheses/999999"):
        answer = researcher.get(path)
        assert answer.status_code == 404, path
        assert "not found" in answer.text


def test_synthesize_page_preselects_the_image_and_lists_its_masks(researcher, phantom):
    image_id = phantom["image"]["id"]
    html = researcher.get("/synthesize", params={"image_id": image_id}).text
    assert re.search(rf'<option value="{image_id}" selected>', html)
    data = page_data(html)
    assert data["selected_image"] == image_id
    assert phantom["labels"]["id"] in [label["id"] for label in data["label_maps"]]
    assert "large" in data["options"]["organs"]["liver"]
    assert "paper" in data["options"]["profiles"]


def test_results_are_visible_to_their_owner_and_admins_only(server, researcher, phantom):
    made = researcher.post(
        "/api/v1/syntheses",
        json={"image_id": phantom["image"]["id"], "mask_id": phantom["labels"]["id"], "seed": 2},
    )
    assert made.status_code == 202, made.text
    synthesis_id = made.json()["id"]
    answer = researcher.get(f"/syntheses/{synthesis_id}")
    assert answer.status_code == 200
    assert page_data(answer.text)["synthesis"]["id"] == synthesis_id
    assert f'href="/syntheses/{synthesis_id}"' in researcher.get("/jobs").text

    with closing(server.login(*server.create_user("researcher"))) as stranger:
        assert stranger.get(f"/syntheses/{synthesis_id}").status_code == 404
        assert f'href="/syntheses/{synthesis_id}"' not in stranger.get("/jobs").text
    with closing(server.login(*server.create_user("admin"))) as admin:
        assert admin.get(f"/syntheses/{synthesis_id}").status_code == 200
    server.wait_for_job(researcher, made.json()["job"]["id"])
