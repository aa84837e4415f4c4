"""Admins download a registered model from the web app; the model picker knows who may.

The server's ``SYNTUMOR_MODELS_BASE_URL`` points the registered Dropbox links at a local server
that answers like Dropbox (``?dl=1`` → a redirect to the file); the file served for
``unet_synt`` is the demo model's checkpoint (a real U-Net, so the server's strict loading
accepts it). The download is a ``model_pull`` job followed over its server-sent events.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.app.admin_support import read_events
from tests.live_server import LiveServer

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
DEMO = REPOSITORY_ROOT / "models" / "demo" / "model.pt"
SHARE = "/s/gb01obtxlbktmrp/model.pt"  # unet_synt's registered link (models/registry.json)


class _Dropbox(BaseHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        self.requests.append(self.path)
        parts = urlsplit(self.path)
        if parts.path == SHARE and parts.query == "dl=1":
            self.send_response(302)
            self.send_header("Location", "/dl" + SHARE)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif parts.path == "/dl" + SHARE:
            body = DEMO.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


@pytest.fixture(scope="module")
def mirror():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Dropbox)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, mirror):
    env = {"SYNTUMOR_MODELS_BASE_URL": mirror, "no_proxy": "127.0.0.1,localhost"}
    live = LiveServer(tmp_path_factory.mktemp("server"), env=env).start()
    yield live
    live.close()


@pytest.mark.skipif(not DEMO.is_file(), reason="the demo model's file is not here")
def test_an_admin_downloads_a_model_and_the_picker_lists_it_first(server):
    admin = server.login(*server.create_user("admin"))
    researcher = server.login(*server.create_user("researcher"))
    before = researcher.get("/api/v1/models").json()
    assert before["can_pull"] is False
    assert {m["name"]: m["status"] for m in before["items"]}["unet_synt"] == "remote"
    assert admin.get("/api/v1/models").json()["can_pull"] is True

    assert researcher.post("/api/v1/admin/models/unet_synt/pull").status_code == 403
    assert admin.post("/api/v1/admin/models/demo/pull").status_code == 409  # already here
    unknown = admin.post("/api/v1/admin/models/unet_synth/pull")
    assert unknown.status_code == 404 and "did you mean 'unet_synt'" in unknown.text

    answer = admin.post("/api/v1/admin/models/unet_synt/pull")
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["kind"] == "model_pull"
    events = read_events(admin, f"/api/v1/jobs/{job['id']}/events", timeout=300)
    assert events[-1][0] == "end" and events[-1][1]["status"] == "succeeded", events[-1]
    assert events[-1][1]["result"] == {"model": "unet_synt"}
    assert events[-1][1]["progress"] == 1.0
    assert _Dropbox.requests[:2] == [SHARE + "?dl=1", "/dl" + SHARE]

    installed = server.data_dir / "models" / "unet_synt" / "model.pt"
    assert installed.read_bytes() == DEMO.read_bytes()
    statuses = {m["name"]: m["status"] for m in researcher.get("/api/v1/models").json()["items"]}
    assert statuses["unet_synt"] == "local"
    page = admin.get("/admin")
    assert page.status_code == 200
    names = [line for line in page.text.splitlines() if 'data-model="' in line and "<li" in line]
    ready = [
        i for i, line in enumerate(names) if "unet_synt" in line or 'data-model="demo"' in line
    ]
    assert ready == [0, 1]  # available models come first in the admin's list
