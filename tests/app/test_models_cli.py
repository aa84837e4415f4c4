"""The model registry and ``syntumor models list | pull | add``.

Downloads are tested against a real HTTP server on 127.0.0.1 serving a small U-Net checkpoint
written by ``save_checkpoint``, and broken variants of it (corrupt, truncated, a web page, a
pickle that would create a file when unpickled, weights of another shape).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import socket
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import app.registry.catalog as registry
from app.cli import app
from app.cli.registry import register
from app.registry.download import DownloadError, direct_download_url
from app.registry.pull import pull_one
from syntumor_core.checkpoints import load_model, save_checkpoint
from syntumor_core.errors import CheckpointError, ParameterError
from syntumor_core.models import ARCHITECTURES, build_model

register(app)
runner = CliRunner()
REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


class _Trap:
    """Unpickling this would create ``path`` (it reduces to ``open(path, "w")``)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a client that stops reading early (the size limit) is expected here


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict:
    """A folder of good and bad checkpoint files behind an HTTP server on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("served")
    good = folder / "unet.pt"
    save_checkpoint(good, build_model("unet"), arch="unet", epoch=7, best_acc=0.25)
    data = good.read_bytes()
    (folder / "corrupt.pt").write_bytes(bytes(range(256)) * 64)
    (folder / "truncated.pt").write_bytes(data[: len(data) // 2])
    (folder / "page.pt").write_bytes(b"<!DOCTYPE html><html><body>Dropbox</body></html>")
    sentinel = folder / "trap-was-sprung"
    state = {"state_dict": {"weight": torch.zeros(2)}}
    torch.save({**state, "trap": _Trap(str(sentinel))}, folder / "malicious.pt")
    torch.save(state, folder / "other_shape.pt")
    with tarfile.open(folder / "run.tar.gz", "w:gz") as archive:
        archive.add(good, arcname="runs/synt.no_pretrain.unet/model.pt")
        log = io.BytesIO(b"epoch 7\n")
        info = tarfile.TarInfo("runs/synt.no_pretrain.unet/log.txt")
        info.size = len(log.getvalue())
        archive.addfile(info, log)
    server = _QuietServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {
        "url": f"http://127.0.0.1:{server.server_address[1]}",
        "good": good,
        "sha256": hashlib.sha256(data).hexdigest(),
        "sentinel": sentinel,
    }
    server.shutdown()
    server.server_close()


@pytest.fixture
def test_registry(tmp_path, served, monkeypatch) -> Path:
    """A built-in registry of our own: ``unet_synt`` downloadable, ``unet_real`` without link."""
    models = [
        {"name": "unet_synt", "arch": "unet", "tumors": "synthetic", "pretrained": False,
         "url": f"{served['url']}/unet.pt", "description": "test"},
        {"name": "unet_real", "arch": "unet", "tumors": "real", "pretrained": False,
         "url": None, "description": "test"},
        {"name": "demo", "arch": "unet", "tumors": "synthetic", "pretrained": False,
         "path": "models/demo/model.pt", "description": "test"},
    ]  # fmt: skip
    path = tmp_path / "repo" / "models" / "registry.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"format": 1, "models": models}))
    monkeypatch.setattr(registry, "BUILTIN_REGISTRY_PATH", path)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return path


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


def _invoke(*arguments: str):
    return runner.invoke(app, ["models", *arguments])


def _list_rows(data_dir: Path) -> dict[str, dict]:
    result = _invoke("list", "--json", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    return {row["name"]: row for row in json.loads(result.stdout)}


def _nothing_installed(data_dir: Path, name: str) -> bool:
    return not (data_dir / "models" / name).exists()


def test_builtin_registry_holds_the_ten_published_checkpoints_and_the_demo():
    document = json.loads((REPOSITORY_ROOT / "models" / "registry.json").read_text())
    assert "MrGiovanni/SyntheticTumors" in document["source"]["repository"]
    assert document["source"]["file"] == "README.md"
    entries = registry.load_registry(REPOSITORY_ROOT / "models" / "registry.json")
    published = [e for e in entries if e.readme_log_dir]
    assert len(published) == 10 and len({e.name for e in entries}) == len(entries)
    for tumors, short in (("real", "real"), ("synthetic", "synt")):
        group = [e for e in published if e.tumors == tumors]
        assert sorted(e.arch for e in group) == sorted(ARCHITECTURES + ("swin_unetrv2_base",))
        for entry in group:
            pretrain = "pretrain" if entry.pretrained else "no_pretrain"
            assert entry.readme_log_dir == f"runs/{short}.{pretrain}.{entry.arch}"
            assert entry.url is None or entry.url.startswith("https://")
        assert [e.arch for e in group if e.pretrained] == ["swin_unetrv2_base"]
    demo = next(e for e in entries if e.name == "demo")
    assert (demo.arch, demo.path) == ("unet", "models/demo/model.pt")


def test_models_commands_have_help():
    for command in ([], ["list"], ["pull"], ["add"]):
        result = _invoke(*command, "--help")
        assert result.exit_code == 0 and "Usage" in result.output


def test_list_shows_every_registered_model(data_dir):
    result = _invoke("list", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "ARCH", "TUMORS", "PRETRAINED", "STATUS"]
    demo_here = (REPOSITORY_ROOT / "models" / "demo" / "model.pt").is_file()
    for entry in registry.load_registry(REPOSITORY_ROOT / "models" / "registry.json"):
        row = next(line.split() for line in lines if line.split()[:1] == [entry.name])
        pretrained = "yes" if entry.pretrained else "no"
        assert row[1:4] == [entry.arch, entry.tumors, pretrained]
        expected = "local" if entry.name == "demo" and demo_here else "missing"
        assert row[4] == ("remote" if entry.url and expected == "missing" else expected)


def test_list_statuses_follow_the_files(test_registry, data_dir):
    rows = _list_rows(data_dir)
    assert {name: row["status"] for name, row in rows.items()} == {
        "unet_synt": "remote",
        "unet_real": "missing",
        "demo": "missing",
    }
    demo_file = test_registry.parents[1] / "models" / "demo" / "model.pt"
    demo_file.parent.mkdir(parents=True)
    demo_file.write_bytes(b"x")
    assert _list_rows(data_dir)["demo"]["status"] == "local"


def test_pull_installs_a_verified_checkpoint(test_registry, data_dir, served):
    result = _invoke("pull", "unet_synt", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    installed = data_dir / "models" / "unet_synt" / "model.pt"
    assert installed.read_bytes() == served["good"].read_bytes()
    model, info = load_model(installed)
    assert info.arch == "unet" and info.epoch == 7
    config = json.loads((installed.parent / "config.json").read_text())
    assert config["sha256"] == served["sha256"] and config["source"].endswith("/unet.pt")
    assert sorted(p.name for p in installed.parent.iterdir()) == ["config.json", "model.pt"]
    assert _list_rows(data_dir)["unet_synt"]["status"] == "local"
    assert registry.resolve_model("unet_synt", data_dir) == (installed, "unet")


def test_pull_from_a_mirror_and_from_an_archive(test_registry, data_dir, served):
    result = _invoke(
        "pull", "unet_real", "--url", f"{served['url']}/run.tar.gz", "--data-dir", str(data_dir)
    )
    assert result.exit_code == 0, result.output
    path, arch = registry.resolve_model("unet_real", data_dir)
    assert arch == "unet" and path.read_bytes() == served["good"].read_bytes()


@pytest.mark.parametrize(
    ("file_name", "reason"),
    [
        ("corrupt.pt", "corrupt"),
        ("truncated.pt", "corrupt"),
        ("malicious.pt", "refusing to load"),
        ("other_shape.pt", "does not fit architecture 'unet'"),
    ],
)
def test_pull_refuses_a_bad_download_and_leaves_nothing(
    test_registry, data_dir, served, file_name, reason
):
    url = f"{served['url']}/{file_name}"
    result = _invoke("pull", "unet_synt", "--url", url, "--data-dir", str(data_dir))
    assert result.exit_code == 2
    message = result.output.strip().splitlines()[-1]
    assert message.startswith(f"error: refused the download of 'unet_synt' from {url}")
    assert reason in message and "Traceback" not in result.output
    assert _nothing_installed(data_dir, "unet_synt")
    assert not served["sentinel"].exists()


def test_pull_without_network_fails_clearly(test_registry, data_dir):
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = _invoke(
        "pull", "unet_synt", "--url", f"http://127.0.0.1:{port}/m.pt", "--data-dir", str(data_dir)
    )
    assert result.exit_code == 2
    assert f"error: cannot reach 127.0.0.1:{port}" in result.output
    assert "check your internet connection" in result.output
    assert _nothing_installed(data_dir, "unet_synt")


def test_pull_reports_http_errors_size_limits_and_missing_links(test_registry, data_dir, served):
    result = _invoke(
        "pull", "unet_synt", "--url", f"{served['url']}/absent.pt", "--data-dir", str(data_dir)
    )
    assert result.exit_code == 2 and "HTTP 404" in result.output
    result = _invoke(
        "pull", "unet_synt", "--url", f"{served['url']}/page.pt", "--data-dir", str(data_dir)
    )
    assert result.exit_code == 2 and "refused the download of 'unet_synt'" in result.output
    assert "answered a web page, not a checkpoint" in result.output
    with pytest.raises(DownloadError, match="download limit of 1000 bytes"):
        pull_one("unet_synt", data_dir, max_bytes=1000)
    assert _nothing_installed(data_dir, "unet_synt")
    result = _invoke("pull", "unet_real", "--data-dir", str(data_dir))
    assert result.exit_code == 2 and "no download link is recorded" in result.output
    result = _invoke(
        "pull", "demo", "--url", f"{served['url']}/unet.pt", "--data-dir", str(data_dir)
    )
    assert result.exit_code == 2 and "ships with SynTumor" in result.output
    result = _invoke("pull", "unet_rea", "--data-dir", str(data_dir))
    assert result.exit_code == 2 and "did you mean 'unet_real'" in result.output
    result = _invoke(
        "pull", "unet_synt", "--url", "file:///etc/passwd", "--data-dir", str(data_dir)
    )
    assert result.exit_code == 2 and "must start with http:// or https://" in result.output


def test_add_registers_a_local_checkpoint(test_registry, data_dir, served, tmp_path):
    source = tmp_path / "runs" / "Mine" / "model.pt"
    source.parent.mkdir(parents=True)
    shutil.copyfile(served["good"], source)
    result = _invoke(
        "add", str(source), "--arch", "unet", "--tumors", "synthetic", "--data-dir", str(data_dir)
    )
    assert result.exit_code == 0, result.output
    row = _list_rows(data_dir)["mine"]
    assert (row["arch"], row["tumors"], row["status"], row["origin"]) == (
        "unet",
        "synthetic",
        "local",
        "user",
    )
    path, arch = registry.resolve_model("mine", data_dir)
    assert arch == "unet" and path.read_bytes() == source.read_bytes()
    again = _invoke("add", str(source), "--arch", "unet", "--data-dir", str(data_dir))
    assert again.exit_code == 2 and "already added" in again.output
    replaced = _invoke(
        "add", str(source), "--arch", "unet", "--replace", "--data-dir", str(data_dir)
    )
    assert replaced.exit_code == 0, replaced.output
    assert len(registry.load_registry(registry.user_registry_path(data_dir), origin="user")) == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--arch", "swin_unetrv2_tiny", "--name", "x"],
            "does not fit architecture 'swin_unetrv2_tiny'",
        ),
        (["--arch", "unet2", "--name", "x"], "did you mean 'unet'"),
        (["--arch", "unet", "--name", "unet_synt"], "belongs to a built-in model"),
        (["--arch", "unet", "--name", "Bad Name"], "model name must be"),
    ],
)
def test_add_refuses_bad_input(test_registry, data_dir, served, arguments, message):
    result = _invoke("add", str(served["good"]), *arguments, "--data-dir", str(data_dir))
    assert result.exit_code == 2 and message in result.output
    assert not (data_dir / "models" / "x").exists()


def test_add_keeps_the_training_settings_for_inference(test_registry, data_dir, served, tmp_path):
    """A model trained on a 1.5 mm grid (its run folder's config.json says so) is segmented
    on that grid after `models add`, not on the published 1 mm."""
    from syntumor_core.segmentation import Predictor

    run = tmp_path / "runs" / "coarse"
    run.mkdir(parents=True)
    shutil.copyfile(served["good"], run / "model.pt")
    (run / "config.json").write_text(
        json.dumps({"arch": "unet", "spacing_mm": [1.5, 1.5, 1.5], "window_hu": [-50, 200]})
    )
    entry = registry.add(run / "model.pt", "unet", None, data_dir)
    path, _ = registry.resolve_model(entry.name, data_dir)
    installed = json.loads((path.parent / "config.json").read_text())
    assert installed["spacing_mm"] == [1.5, 1.5, 1.5] and installed["window_hu"] == [-50.0, 200.0]
    predictor = Predictor.from_checkpoint(path, device="cpu")
    assert predictor.spacing_mm == (1.5, 1.5, 1.5) and predictor.hu_window == (-50.0, 200.0)
    (run / "config.json").write_text(json.dumps({"spacing_mm": [0, 1, 1]}))
    with pytest.raises(ParameterError, match="spacing_mm"):
        registry.add(run / "model.pt", "unet", "broken", data_dir)
    assert _nothing_installed(data_dir, "broken")


def test_add_refuses_a_malicious_file(test_registry, data_dir, served):
    malicious = served["good"].parent / "malicious.pt"
    with pytest.raises(CheckpointError, match="refused checkpoint"):
        registry.add(malicious, "unet", "evil", data_dir)
    assert _nothing_installed(data_dir, "evil") and not served["sentinel"].exists()


def test_resolve_model_names_paths_and_errors(test_registry, data_dir, served):
    assert registry.resolve_model(str(served["good"]), data_dir) == (served["good"], "unet")
    with pytest.raises(registry.ModelRegistryError, match="did you mean 'demo'"):
        registry.resolve_model("dmo", data_dir)
    with pytest.raises(registry.ModelRegistryError, match="models/README.md"):
        registry.resolve_model("demo", data_dir)
    with pytest.raises(registry.ModelRegistryError, match="run `syntumor models pull unet_synt`"):
        registry.resolve_model("unet_synt", data_dir)
    with pytest.raises(CheckpointError, match="not found"):
        registry.resolve_model(str(data_dir / "absent.pt"), data_dir)
    with pytest.raises(ParameterError, match="is a unet, not a swin_unetrv2_tiny"):
        registry.resolve_model("unet_synt", data_dir, arch="swin_unetrv2_tiny")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"arch": "unet3d"}, "unknown architecture"),
        ({"tumors": "fake"}, "tumors must be one of"),
        ({"pretrained": "no"}, "'pretrained' must be a bool"),
        ({"colour": "red"}, "unknown field"),
        ({"url": "ftp://host/m.pt"}, "http:// or https://"),
    ],
)
def test_malformed_registries_are_refused(tmp_path, change, message):
    entry = {"name": "m", "arch": "unet", "tumors": "real", "pretrained": False, "description": ""}
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"models": [{**entry, **change}]}))
    with pytest.raises((registry.ModelRegistryError, ParameterError), match=message):
        registry.load_registry(path)
    path.write_text(json.dumps({"models": [entry, entry]}))
    with pytest.raises(registry.ModelRegistryError, match="twice"):
        registry.load_registry(path)


def test_dropbox_share_links_become_direct_downloads():
    assert direct_download_url("https://www.dropbox.com/s/abc/model.pt?dl=0") == (
        "https://www.dropbox.com/s/abc/model.pt?dl=1"
    )
    assert direct_download_url("https://example.org/m.pt?dl=0") == "https://example.org/m.pt?dl=0"
