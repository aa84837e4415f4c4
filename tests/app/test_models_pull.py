"""``syntumor models pull NAME | --all`` against a local server that behaves like Dropbox.

The server answers a share link (``/s/<id>/<file>``) with an HTML page, and the same link with
``?dl=1`` with a redirect to the file (``/dl/<id>/<file>``), which it serves with HTTP ranges;
a file marked "interrupted" is cut off halfway at its first full request. Checkpoints are tiny:
the U-Net is rebuilt with 4-channel inner levels for these tests (same keys, small shapes).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import torch
from monai.networks.nets import UNet
from typer.testing import CliRunner

import app.registry.catalog as registry
import syntumor_core.checkpoints as checkpoints
from app.cli import app
from app.cli.registry import register
from app.registry.download import DownloadError
from app.registry.fetch import downloads_folder
from app.registry.pull import pull_one
from syntumor_core.checkpoints import save_checkpoint
from syntumor_core.errors import CheckpointError

register(app)
runner = CliRunner()
HTML_PAGE = b"<!DOCTYPE html><html><body>Dropbox - model.pt - Simplify your life</body></html>"


def _tiny_unet(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=(16, 4, 4, 4, 4),
                strides=(2, 2, 2, 2), num_res_units=2)  # fmt: skip


def _checkpoint_bytes(tmp_path: Path, seed: int) -> bytes:
    path = tmp_path / f"unet-{seed}.pt"
    save_checkpoint(path, _tiny_unet(seed), arch="unet", epoch=seed, best_acc=0.5)
    return path.read_bytes()


@pytest.fixture(autouse=True)
def tiny_unet(monkeypatch):
    """Verification builds the tiny U-Net for ``unet`` (the real one for anything else)."""
    real = checkpoints.build_model
    monkeypatch.setattr(checkpoints, "build_model",
                        lambda arch, *a, **k: _tiny_unet() if arch == "unet" else real(arch, *a, **k))  # fmt: skip
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("SYNTUMOR_MODELS_BASE_URL", raising=False)


class _Dropbox(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    interrupted: set[str] = set()
    log: list[tuple[str, str | None]] = []

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        self.log.append((self.path, self.headers.get("Range")))
        parts = urlsplit(self.path)
        if parts.path.startswith("/s/"):
            if parse_qs(parts.query).get("dl") == ["1"]:
                self.send_response(302)
                self.send_header("Location", "/dl/" + parts.path[3:])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._send(200, HTML_PAGE, "text/html; charset=utf-8")
            return
        key = parts.path.removeprefix("/dl/")
        if key not in self.files:
            self._send(404, b"not found", "text/plain")
            return
        data = self.files[key]
        wanted = self.headers.get("Range")
        if wanted:
            start = int(wanted.removeprefix("bytes=").rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self._body(data[start:], "application/octet-stream")
            return
        if key in self.interrupted:
            self.interrupted.discard(key)
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return
        self._send(200, data, "application/octet-stream")

    def _send(self, code: int, body: bytes, kind: str) -> None:
        self.send_response(code)
        self._body(body, kind)

    def _body(self, body: bytes, kind: str) -> None:
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def dropbox():
    _Dropbox.files, _Dropbox.interrupted, _Dropbox.log = {}, set(), []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Dropbox)
    server.handle_error = lambda *args: None  # a client cut off on purpose is expected
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def registry_file(tmp_path, monkeypatch) -> Path:
    """Published-style entries with real Dropbox links, and the archive of all of them."""

    def entry(name, share, run, arch="unet"):
        return {"name": name, "arch": arch, "tumors": "synthetic", "pretrained": False,
                "url": f"https://www.dropbox.com/s/{share}/model.pt", "description": "test",
                "readme_log_dir": f"runs/{run}"}  # fmt: skip

    document = {
        "format": 1,
        "archive": {"url": "https://www.dropbox.com/s/jys4/runs.tar.gz", "member": "runs/{run}/model.pt"},
        "models": [entry("unet_synt", "gb01", "synt.no_pretrain.unet"),
                   entry("unet_real", "8jfu", "real.no_pretrain.unet"),
                   entry("swin_unetrv2_tiny_synt", "ddej", "synt.no_pretrain.swin_unetrv2_tiny",
                         "swin_unetrv2_tiny")],
    }  # fmt: skip
    path = tmp_path / "repo" / "models" / "registry.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(document))
    monkeypatch.setattr(registry, "BUILTIN_REGISTRY_PATH", path)
    return path


def _pull(*arguments: str):
    return runner.invoke(app, ["models", "pull", *arguments])


def _status(data_dir: Path, name: str) -> str:
    return next(s.status for s in registry.list_models(data_dir) if s.entry.name == name)


def test_registered_share_link_asks_for_the_file_and_follows_the_redirect(
    registry_file, dropbox, tmp_path, monkeypatch
):
    data = _checkpoint_bytes(tmp_path, 1)
    _Dropbox.files["gb01/model.pt"] = data
    monkeypatch.setenv("SYNTUMOR_MODELS_BASE_URL", dropbox)  # the setting, as the web app reads it
    result = _pull("unet_synt", "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 0, result.output
    assert [path for path, _ in _Dropbox.log] == ["/s/gb01/model.pt?dl=1", "/dl/gb01/model.pt"]
    installed = tmp_path / "data" / "models" / "unet_synt" / "model.pt"
    assert installed.read_bytes() == data and _status(tmp_path / "data", "unet_synt") == "local"
    config = json.loads((installed.parent / "config.json").read_text())
    assert config["source"] == f"{dropbox}/s/gb01/model.pt?dl=1"


def test_a_plain_share_link_answering_a_web_page_is_refused(registry_file, dropbox, tmp_path):
    _Dropbox.files["gb01/model.pt"] = _checkpoint_bytes(tmp_path, 1)
    data_dir = tmp_path / "data"
    result = _pull("unet_synt", "--url", f"{dropbox}/s/gb01/model.pt", "--data-dir", str(data_dir))
    assert result.exit_code == 2
    assert "answered a web page (text/html)" in result.output and "?dl=1" in result.output
    assert not (data_dir / "models" / "unet_synt").exists()
    assert not any(downloads_folder(data_dir).glob("*"))  # no half page kept to "resume"


def test_an_interrupted_download_resumes_where_it_stopped(registry_file, dropbox, tmp_path):
    data = _checkpoint_bytes(tmp_path, 2)
    _Dropbox.files["gb01/model.pt"] = data
    _Dropbox.interrupted.add("gb01/model.pt")
    data_dir = tmp_path / "data"
    with pytest.raises(DownloadError, match="broke off.*again to resume"):
        pull_one("unet_synt", data_dir, base_url=dropbox)
    partial = downloads_folder(data_dir) / "unet_synt.part"
    assert partial.read_bytes() == data[: len(data) // 2]
    assert _status(data_dir, "unet_synt") == "remote"
    path = pull_one("unet_synt", data_dir, base_url=dropbox)
    assert path.read_bytes() == data and not partial.exists()
    assert _Dropbox.log[-1] == ("/dl/gb01/model.pt", f"bytes={len(data) // 2}-")
    assert _Dropbox.log[-2] == ("/s/gb01/model.pt?dl=1", f"bytes={len(data) // 2}-")


def test_the_first_sha256_is_recorded_and_another_file_later_refused(
    registry_file, dropbox, tmp_path
):
    first = _checkpoint_bytes(tmp_path, 3)
    _Dropbox.files["gb01/model.pt"] = first
    data_dir = tmp_path / "data"
    pull_one("unet_synt", data_dir, base_url=dropbox)
    record = json.loads((data_dir / "models" / "checksums.json").read_text())
    assert record["unet_synt"]["sha256"] == hashlib.sha256(first).hexdigest()
    pull_one("unet_synt", data_dir, base_url=dropbox)  # the same file again: accepted
    _Dropbox.files["gb01/model.pt"] = _checkpoint_bytes(tmp_path, 4)  # a valid, other file
    result = _pull("unet_synt", "--base-url", dropbox, "--data-dir", str(data_dir))
    assert result.exit_code == 2
    assert "differs from" in result.output and "nothing was replaced" in result.output
    installed = data_dir / "models" / "unet_synt" / "model.pt"
    assert installed.read_bytes() == first
    assert sorted(p.name for p in installed.parent.iterdir()) == ["config.json", "model.pt"]


def test_a_file_of_another_architecture_is_refused(registry_file, dropbox, tmp_path):
    swin_like = tmp_path / "swin.pt"
    torch.save({"state_dict": {"swinViT.patch_embed.proj.weight": torch.zeros(12, 1, 2, 2, 2)}},
               swin_like)  # fmt: skip
    _Dropbox.files["gb01/model.pt"] = swin_like.read_bytes()
    data_dir = tmp_path / "data"
    with pytest.raises(
        CheckpointError, match="does not fit architecture 'unet'.*swin_unetrv2_tiny"
    ):
        pull_one("unet_synt", data_dir, base_url=dropbox)
    assert _status(data_dir, "unet_synt") == "remote"
    assert not (data_dir / "models" / "unet_synt").exists()
    assert not (data_dir / "models" / "checksums.json").exists()


def test_pull_all_installs_every_model_of_the_archive(registry_file, dropbox, tmp_path):
    models = {"synt.no_pretrain.unet": _checkpoint_bytes(tmp_path, 5),
              "real.no_pretrain.unet": _checkpoint_bytes(tmp_path, 6)}  # fmt: skip
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for run, data in models.items():
            info = tarfile.TarInfo(f"runs/{run}/model.pt")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    _Dropbox.files["jys4/runs.tar.gz"] = buffer.getvalue()
    data_dir = tmp_path / "data"
    result = _pull("--all", "--base-url", dropbox, "--data-dir", str(data_dir))
    assert result.exit_code == 2  # the Swin member is not in this archive
    assert "runs/synt.no_pretrain.swin_unetrv2_tiny/model.pt" in result.output
    assert "1 of 3 models were not installed" in result.output
    assert [path for path, _ in _Dropbox.log] == [
        "/s/jys4/runs.tar.gz?dl=1",
        "/dl/jys4/runs.tar.gz",
    ]
    for name, run in (
        ("unet_synt", "synt.no_pretrain.unet"),
        ("unet_real", "real.no_pretrain.unet"),
    ):
        assert (data_dir / "models" / name / "model.pt").read_bytes() == models[run]
        assert _status(data_dir, name) == "local"
    assert _status(data_dir, "swin_unetrv2_tiny_synt") == "remote"
    assert not any(downloads_folder(data_dir).glob("*"))  # the archive is not kept
    assert _pull("unet_synt", "--all").exit_code != 0  # a name or --all, not both
