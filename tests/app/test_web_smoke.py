"""The smallest end-to-end path through a real server: log in, upload, synthesize, segment."""

from __future__ import annotations


def test_upload_synthesize_segment(server, small_phantom_files):
    image_path, labels_path = small_phantom_files
    client = server.token_client("researcher")
    answer = client.post(
        "/api/v1/volumes", params={"name": image_path.name}, content=image_path.read_bytes()
    )
    assert answer.status_code == 201, answer.text
    image = answer.json()
    answer = client.post(
        "/api/v1/volumes",
        params={"name": labels_path.name, "kind": "label", "image_id": image["id"]},
        content=labels_path.read_bytes(),
    )
    assert answer.status_code == 201, answer.text
    labels = answer.json()
    assert labels["shape"] == image["shape"] == [96, 80, 48]

    made = client.post(
        "/api/v1/syntheses",
        json={"image_id": image["id"], "mask_id": labels["id"], "tumor_type": "large", "seed": 1},
    )
    assert made.status_code == 202, made.text
    job = server.wait_for_job(client, made.json()["job"]["id"])
    assert job["status"] == "succeeded", job
    synthesis = client.get(f"/api/v1/syntheses/{made.json()['id']}").json()
    assert synthesis["job"]["result"]["tumor_voxels"] > 0

    seg = client.post(
        "/api/v1/segmentations", json={"image_id": synthesis["out_image_id"], "model": "demo"}
    )
    assert seg.status_code == 202, seg.text
    job = server.wait_for_job(client, seg.json()["job"]["id"])
    assert job["status"] == "succeeded", job
    result = client.get(f"/api/v1/segmentations/{seg.json()['id']}").json()
    assert result["label_id"] is not None
    download = client.get(result["downloads"]["label"])
    assert download.status_code == 200 and download.content[:2] == b"\x1f\x8b"


def test_favicon_is_served_and_linked(server):
    client = server.client()
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO file
    login = client.get("/login")
    assert '<link rel="icon" href="/favicon.ico"' in login.text
    assert client.get("/static/favicon.svg").status_code == 200


def test_tumor_types_are_offered_in_size_order(server):
    options = server.token_client("researcher").get("/api/v1/synthesis-options").json()
    assert options["organs"]["liver"] == ["tiny", "small", "medium", "large", "mix"]
    assert options["organs"]["kidney"][-1] == "mix"
