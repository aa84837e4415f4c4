"""``/api/v1/volumes`` against a real server: uploads (raw and multipart), listing, download,
delete, and every kind of bad upload.

After each refused upload the server still answers, no volume row was added and no file is
left in the data folder's ``tmp/`` or ``volumes/``.
"""

from __future__ import annotations

import hashlib
import io
import zipfile

import numpy as np
import pytest

from tests.app.api_support import assert_error, ct_array, nifti_bytes, stored_files, volume_count
from tests.live_server import LiveServer

SHAPE = (24, 20, 16)


def organ_labels(shape=SHAPE, *, start: int = 6) -> np.ndarray:
    labels = np.zeros(shape, dtype=np.uint8)
    labels[start : start + 12, 5:15, 4:12] = 1
    return labels


@pytest.fixture(scope="module")
def researcher(server):
    return server.token_client("researcher")


def upload(client, data: bytes, name: str, **params):
    return client.post("/api/v1/volumes", params={"name": name, **params}, content=data)


def check_refused(server, client, data: bytes, name: str, status: int, *, contains, **params):
    """Upload, expect the error, and check that nothing was kept."""
    rows, files = volume_count(server), stored_files(server)
    assert_error(upload(client, data, name, **params), status, contains=contains)
    assert client.get("/healthz").status_code == 200
    assert volume_count(server) == rows
    assert stored_files(server) == files


# --- successful uploads --------------------------------------------------------------------------


def test_raw_upload_duplicate_get_and_download(server, researcher):
    data = nifti_bytes(ct_array(1))
    answer = upload(researcher, data, "ct one.nii.gz")
    assert answer.status_code == 201, answer.text
    volume = answer.json()
    assert volume["duplicate"] is False and volume["kind"] == "image"
    assert volume["shape"] == list(SHAPE) and volume["spacing_mm"] == [2.0, 2.0, 2.5]
    assert volume["name"] == "ct one.nii.gz" and volume["format"] == "nifti"
    assert volume["sha256"] == hashlib.sha256(data).hexdigest()

    again = upload(researcher, data, "another name.nii.gz")
    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] is True and again.json()["id"] == volume["id"]
    assert again.json()["name"] == "ct one.nii.gz"

    got = researcher.get(f"/api/v1/volumes/{volume['id']}")
    assert got.status_code == 200 and got.json()["sha256"] == volume["sha256"]
    assert got.json()["label_maps"] == []
    download = researcher.get(volume["download_url"])
    assert download.status_code == 200 and download.content == data
    assert f"volume-{volume['id']}.nii.gz" in download.headers["content-disposition"]
    assert not list((server.data_dir / "tmp").iterdir())


def test_multipart_uploads_an_uncompressed_image_and_its_label_map(server, researcher):
    image_data = nifti_bytes(ct_array(2), compressed=False)
    answer = researcher.post(
        "/api/v1/volumes", files={"file": ("plain.nii", image_data, "application/octet-stream")}
    )
    assert answer.status_code == 201, answer.text
    image = answer.json()
    assert image["shape"] == list(SHAPE)
    download = researcher.get(image["download_url"])
    assert download.content == image_data
    assert download.headers["content-type"] == "application/octet-stream"

    label_data = nifti_bytes(organ_labels())
    answer = researcher.post(
        "/api/v1/volumes",
        files={"file": ("organs.nii.gz", label_data)},
        data={"kind": "label", "image_id": str(image["id"])},
    )
    assert answer.status_code == 201, answer.text
    label = answer.json()
    assert label["kind"] == "label" and label["image_id"] == image["id"]
    got = researcher.get(f"/api/v1/volumes/{image['id']}").json()
    assert [v["id"] for v in got["label_maps"]] == [label["id"]]

    # The same label bytes for another image are that image's own label map, not a duplicate.
    other_image = upload(researcher, nifti_bytes(ct_array(3)), "other.nii.gz").json()
    answer = upload(researcher, label_data, "o.nii.gz", kind="label", image_id=other_image["id"])
    assert answer.status_code == 201 and answer.json()["duplicate"] is False
    assert answer.json()["image_id"] == other_image["id"] and answer.json()["id"] != label["id"]


def test_list_filters_and_paginates(server, researcher):
    ids = [
        upload(researcher, nifti_bytes(ct_array(10 + i)), f"p{i}.nii.gz").json()["id"]
        for i in range(3)
    ]
    page = researcher.get("/api/v1/volumes", params={"limit": 2, "offset": 0, "kind": "image"})
    assert page.status_code == 200
    first = page.json()
    assert first["limit"] == 2 and first["offset"] == 0 and len(first["items"]) == 2
    assert [v["id"] for v in first["items"]] == sorted(ids, reverse=True)[:2]  # newest first
    second = researcher.get("/api/v1/volumes", params={"limit": 2, "offset": 2, "kind": "image"})
    assert second.json()["items"][0]["id"] == min(ids)
    assert second.json()["total"] == first["total"] >= 3
    labels = researcher.get("/api/v1/volumes", params={"kind": "label"}).json()
    assert all(v["kind"] == "label" for v in labels["items"])
    assert_error(researcher.get("/api/v1/volumes", params={"limit": 0}), 422, contains="limit")
    assert_error(researcher.get("/api/v1/volumes", params={"limit": 201}), 422, contains="limit")
    assert_error(researcher.get("/api/v1/volumes", params={"kind": "mesh"}), 422, contains="kind")


def test_delete_removes_row_labels_and_files(server, researcher):
    image = upload(researcher, nifti_bytes(ct_array(20)), "gone.nii.gz").json()
    label = upload(
        researcher, nifti_bytes(organ_labels(start=2)), "gone-labels.nii.gz", kind="label",
        image_id=image["id"],
    ).json()  # fmt: skip
    files_before = stored_files(server)
    other = server.token_client("researcher")
    assert_error(  # another researcher's volume is not there for them (issue 17)
        other.delete(f"/api/v1/volumes/{image['id']}"), 404, f"volume {image['id']} not found"
    )
    assert researcher.delete(f"/api/v1/volumes/{image['id']}").status_code == 204
    assert_error(
        researcher.get(f"/api/v1/volumes/{image['id']}"), 404, f"volume {image['id']} not found"
    )
    assert_error(
        researcher.get(f"/api/v1/volumes/{label['id']}"), 404, f"volume {label['id']} not found"
    )
    assert len(stored_files(server)) == len(files_before) - 2
    assert_error(researcher.delete(f"/api/v1/volumes/{image['id']}"), 404)

    admin = server.token_client("admin")
    theirs = upload(other, nifti_bytes(ct_array(21)), "theirs.nii.gz").json()
    assert admin.delete(f"/api/v1/volumes/{theirs['id']}").status_code == 204


def test_hostile_names_are_display_text_only(server, researcher, tmp_path):
    outside = server.data_dir.parent
    before = set(outside.iterdir())
    answer = upload(researcher, nifti_bytes(ct_array(30)), "../../../../tmp/evil.nii.gz")
    assert answer.status_code == 201, answer.text
    assert answer.json()["name"] == "evil.nii.gz"
    answer = upload(
        researcher, nifti_bytes(ct_array(31)), '..\\..\\<script>x</script>"a\x07.nii.gz'
    )
    assert answer.status_code == 201, answer.text
    assert "<" not in answer.json()["name"] and "\x07" not in answer.json()["name"]
    answer = researcher.post(
        "/api/v1/volumes", files={"file": ("../../../etc/passwd.nii.gz", nifti_bytes(ct_array(32)))}
    )
    assert answer.status_code == 201 and answer.json()["name"] == "passwd.nii.gz"
    assert set(outside.iterdir()) == before
    known = {v["sha256"] for v in _all_volumes(researcher)}
    for path in stored_files(server):  # files are named by content hash, never by upload name
        assert path.parent.parent == server.data_dir / "volumes"
        assert path.name.split(".")[0] in known and path.parent.name == path.name[:2]
    check_refused(server, researcher, b"x", "..", 415, contains="unsupported file type")
    check_refused(server, researcher, b"x", "a" * 256 + ".nii", 422, contains="name")


def _all_volumes(client) -> list[dict]:
    return client.get("/api/v1/volumes", params={"limit": 200}).json()["items"]


# --- refused uploads --------------------------------------------------------------------------------


def test_broken_and_truncated_files_are_refused(server, researcher):
    good = nifti_bytes(ct_array(40))
    check_refused(server, researcher, b"\x1f\x8b" + b"garbage" * 50, "broken.nii.gz", 422,
                  contains="broken or truncated gzip data")  # fmt: skip
    check_refused(server, researcher, good[: len(good) // 2], "cut.nii.gz", 422,
                  contains="broken or truncated gzip data")  # fmt: skip
    raw = nifti_bytes(ct_array(41), compressed=False)
    check_refused(server, researcher, raw[: len(raw) - 1000], "cut.nii", 422,
                  contains="truncated voxel data")  # fmt: skip
    check_refused(server, researcher, raw[:200], "header-only.nii", 422,
                  contains="truncated NIfTI header")  # fmt: skip
    check_refused(server, researcher, b"just some text " * 100, "text.nii", 422,
                  contains="not a NIfTI file")  # fmt: skip
    check_refused(server, researcher, b"", "empty.nii.gz", 400, contains="the upload is empty")


def test_wrong_dimensions_values_and_geometry_are_refused(server, researcher):
    check_refused(server, researcher, nifti_bytes(np.zeros((32, 32), np.float32)), "flat.nii.gz",
                  422, contains="must be 3-D, got 2-D")  # fmt: skip
    check_refused(server, researcher, nifti_bytes(np.zeros((16, 16, 16, 3), np.float32)),
                  "time.nii.gz", 422, contains="must be 3-D, got 4-D")  # fmt: skip
    with_nan = ct_array(42)
    with_nan[3, 4, 5] = np.nan
    check_refused(server, researcher, nifti_bytes(with_nan), "nan.nii.gz", 422,
                  contains=["NaN", "(3, 4, 5)"])  # fmt: skip
    check_refused(server, researcher, nifti_bytes(ct_array(43, (4, 30, 30))), "tiny.nii.gz", 422,
                  contains="too small for a CT volume")  # fmt: skip
    check_refused(server, researcher, nifti_bytes(ct_array(44), spacing=(2.0, 2.0, 50.0)),
                  "thick.nii.gz", 422, contains="not plausible for CT")  # fmt: skip
    complex_data = np.zeros(SHAPE, dtype=np.complex64)
    check_refused(server, researcher, nifti_bytes(complex_data), "complex.nii.gz", 422,
                  contains="voxel type")  # fmt: skip


def test_wrong_names_kinds_and_label_maps_are_refused(server, researcher):
    data = nifti_bytes(ct_array(50))
    check_refused(server, researcher, data, "scan.txt", 415, contains="unsupported file type")
    rows = volume_count(server)
    assert_error(researcher.post("/api/v1/volumes", content=data), 400,
                 "give the file name with ?name=… (it tells the format)")  # fmt: skip
    image = upload(researcher, data, "base.nii.gz").json()
    label = nifti_bytes(organ_labels())
    check_refused(server, researcher, label, "l.nii.gz", 400, kind="label",
                  contains="a label map needs image_id")  # fmt: skip
    check_refused(server, researcher, label, "l.nii.gz", 404, kind="label", image_id=999999,
                  contains="volume 999999 not found")  # fmt: skip
    check_refused(server, researcher, data, "l.nii.gz", 422, image_id=image["id"],
                  contains="image_id is only for label maps")  # fmt: skip
    check_refused(server, researcher, nifti_bytes(organ_labels((20, 20, 16))), "l.nii.gz", 422,
                  kind="label", image_id=image["id"],
                  contains="label map shape (20, 20, 16) differs from its image's (24, 20, 16)")  # fmt: skip
    check_refused(server, researcher, nifti_bytes(ct_array(51)), "l.nii.gz", 422, kind="label",
                  image_id=image["id"], contains="a label map must hold integers")  # fmt: skip
    check_refused(server, researcher, b"PK", "l.zip", 415, kind="label", image_id=image["id"],
                  contains="label maps must be NIfTI files")  # fmt: skip
    good_label = upload(researcher, label, "l.nii.gz", kind="label", image_id=image["id"]).json()
    check_refused(server, researcher, label, "l2.nii.gz", 422, kind="label",
                  image_id=good_label["id"], contains="is a label map")  # fmt: skip
    check_refused(server, researcher, data, "x.nii.gz", 422, kind="mesh", contains="kind")
    assert volume_count(server) == rows + 2


def test_bad_multipart_forms_are_refused(server, researcher):
    data = nifti_bytes(ct_array(60))
    rows, files = volume_count(server), stored_files(server)
    no_file = researcher.post("/api/v1/volumes", data={"kind": "image"},
                              files={"other": ("x.nii.gz", data)})  # fmt: skip
    assert_error(no_file, 400, "the form has no 'file' field with a file")
    bad_kind = researcher.post("/api/v1/volumes", files={"file": ("x.nii.gz", data)},
                               data={"kind": "mesh"})  # fmt: skip
    assert_error(bad_kind, 422, "kind must be 'image' or 'label', got 'mesh'")
    bad_id = researcher.post("/api/v1/volumes", files={"file": ("x.nii.gz", data)},
                             data={"kind": "label", "image_id": "one"})  # fmt: skip
    assert_error(bad_id, 422, "image_id must be a whole number from 1 to 2147483647, got 'one'")
    huge_id = researcher.post("/api/v1/volumes", files={"file": ("x.nii.gz", data)},
                              data={"kind": "label", "image_id": str(2**64)})  # fmt: skip
    assert_error(
        huge_id, 422, f"image_id must be a whole number from 1 to 2147483647, got '{2**64}'"
    )
    wrong_type = researcher.post("/api/v1/volumes", files={"file": ("x.exe", data)})
    assert_error(wrong_type, 415, contains="unsupported file type 'x.exe'")
    broken = researcher.post(
        "/api/v1/volumes", content=b"--nope\r\ngarbage",
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )  # fmt: skip
    assert broken.status_code == 400, broken.text
    assert researcher.get("/healthz").status_code == 200
    assert volume_count(server) == rows and stored_files(server) == files


def _dicom_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_bad_dicom_zips_are_refused(server, researcher):
    bomb = _dicom_zip({"slice.dcm": b"\0" * (64 * 1024 * 1024)})
    assert len(bomb) < 200_000
    check_refused(server, researcher, bomb, "bomb.zip", 422,
                  contains=["compression ratio", "zip bomb"])  # fmt: skip
    check_refused(server, researcher, b"PK\x03\x04 not really", "fake.zip", 422,
                  contains=["fake.zip", "not a readable zip archive"])  # fmt: skip
    no_dicom = _dicom_zip({"../../readme.txt": b"hello", "/abs/path.dcm": b"not dicom"})
    check_refused(server, researcher, no_dicom, "notes.zip", 422,
                  contains="no DICOM image slices found")  # fmt: skip
    assert not (server.data_dir.parent / "readme.txt").exists()
    body = assert_error(upload(researcher, bomb, "bomb.zip"), 422)
    assert "/tmp" not in body["detail"] and str(server.data_dir) not in body["detail"]


def test_declared_content_length_over_the_limit_is_refused_before_reading(server):
    token = server.token_client("researcher").headers["Authorization"]
    rows = volume_count(server)
    head = (
        "POST /api/v1/volumes?name=huge.nii HTTP/1.1\n"
        f"Host: 127.0.0.1:{server.port}\nAuthorization: {token}\n"
        f"Content-Length: {50 * 1024**3}\nContent-Type: application/octet-stream"
    )
    status, text = server.raw_request(head, b"\0" * 1000)  # the 50 GB never come
    assert status == 413, text
    assert "larger than the limit of 1024 MiB" in text
    assert server.client().get("/healthz").status_code == 200
    assert volume_count(server) == rows and not list((server.data_dir / "tmp").iterdir())


def test_roles_and_csrf_on_volume_routes(server):
    data = nifti_bytes(ct_array(70))
    reader = server.token_client("reader")
    assert_error(upload(reader, data, "r.nii.gz"), 403, "this needs the role admin or researcher")
    assert_error(reader.get("/api/v1/volumes"), 403, "this needs the role admin or researcher")
    anonymous = server.client()
    assert_error(upload(anonymous, data, "a.nii.gz"), 401)
    assert_error(anonymous.get("/api/v1/volumes/1/file"), 401)
    browser = server.login(*server.create_user("researcher"))
    no_csrf = server.client(cookies=browser.cookies)
    assert_error(upload(no_csrf, data, "c.nii.gz"), 403, contains="CSRF token missing or wrong")
    assert upload(browser, data, "c.nii.gz").status_code == 201


# --- a server with a 1 MiB limit --------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_limit_server(tmp_path_factory):
    live = LiveServer(
        tmp_path_factory.mktemp("small-limit"),
        env={"SYNTUMOR_MAX_UPLOAD_MB": "1", "SYNTUMOR_EMBEDDED_WORKER": "false"},
    ).start()
    yield live
    live.close()


def test_bodies_over_the_limit_without_content_length_are_refused(small_limit_server):
    server = small_limit_server
    client = server.token_client("researcher")

    def chunks():  # no Content-Length: chunked transfer encoding
        for _ in range(48):
            yield b"\0" * 65536

    answer = client.post("/api/v1/volumes", params={"name": "big.nii"}, content=chunks())
    assert_error(answer, 413, "upload larger than the limit of 1 MiB")
    answer = client.post("/api/v1/volumes", files={"file": ("big.nii", b"\0" * (3 * 1024**2))})
    assert_error(answer, 413, contains="larger than the limit of 1 MiB")
    assert client.get("/healthz").status_code == 200
    assert volume_count(server) == 0
    assert stored_files(server) == []
    small = client.post("/api/v1/volumes", params={"name": "ok.nii.gz"},
                        content=nifti_bytes(ct_array(80)))  # fmt: skip
    assert small.status_code == 201, small.text


def test_label_maps_carry_a_legend_and_where_they_were_edited_from(server, researcher):
    image = upload(researcher, nifti_bytes(ct_array(41)), "legend ct.nii.gz").json()
    legend = '{"1": "liver", "2": " tumor "}'
    labels = upload(researcher, nifti_bytes(organ_labels()), "organs.nii.gz",
                    kind="label", image_id=image["id"], labels=legend)  # fmt: skip
    assert labels.status_code == 201, labels.text
    assert labels.json()["labels"] == {"1": "liver", "2": "tumor"}
    edited = organ_labels(start=7)
    answer = upload(researcher, nifti_bytes(edited), "organs – edited.nii", kind="label",
                    image_id=image["id"], derived_from=labels.json()["id"])  # fmt: skip
    assert answer.status_code == 201, answer.text
    assert answer.json()["labels"] == {"1": "liver", "2": "tumor"}  # the source's legend
    for params, message in [
        ({"labels": "{liver}"}, "labels must be JSON"),
        ({"labels": '{"0": "background"}'}, "whole numbers from 1 to 255, got '0'"),
        ({"labels": '{"1": ""}'}, "the name of label 1 must be text of 1-60 characters"),
        ({"labels": "[1, 2]"}, "labels must be a JSON object"),
        ({"derived_from": image["id"]}, f"derived_from must be a label map of image {image['id']}"),
    ]:
        check_refused(server, researcher, nifti_bytes(organ_labels(start=3)), "x.nii.gz", 422,
                      contains=message, kind="label", image_id=image["id"], **params)  # fmt: skip
    check_refused(server, researcher, nifti_bytes(ct_array(42)), "ct.nii.gz", 422,
                  contains="only for label maps", labels='{"1": "liver"}')  # fmt: skip
