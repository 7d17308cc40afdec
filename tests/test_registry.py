"""The embedded registry (`workflows.registry`, `imagegate registry serve`), against the real docker-registry."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from workflows import registry
from workflows.errors import LocalRunError
from workflows.registry import EmbeddedRegistry

pytestmark = [
    pytest.mark.real,
    pytest.mark.skipif(
        shutil.which("docker-registry") is None, reason="docker-registry is not installed (scripts/setup)"
    ),
]

ROOT = Path(__file__).resolve().parent.parent


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _closed(host: str) -> bool:
    try:
        urllib.request.urlopen(f"http://{host}/v2/", timeout=1)
    except urllib.error.URLError as exc:
        return isinstance(exc.reason, ConnectionRefusedError)
    return False


def _push_blob_and_manifest(url: str, repo: str, tag: str) -> str:
    """Upload one config blob and an OCI manifest through the registry API; returns the manifest digest."""
    config = b"{}"
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    start = urllib.request.Request(f"{url}/v2/{repo}/blobs/uploads/", method="POST")
    with urllib.request.urlopen(start) as r:
        location = r.headers["Location"]
    upload = location if location.startswith("http") else url + location
    sep = "&" if "?" in upload else "?"
    put = urllib.request.Request(f"{upload}{sep}digest={config_digest}", data=config, method="PUT")
    put.add_header("Content-Type", "application/octet-stream")
    urllib.request.urlopen(put).close()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": 2},
            "layers": [],
        }
    ).encode()
    req = urllib.request.Request(f"{url}/v2/{repo}/manifests/{tag}", data=manifest, method="PUT")
    req.add_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
    with urllib.request.urlopen(req) as r:
        return r.headers["Docker-Content-Digest"]


def test_start_returns_once_v2_answers_without_auth(tmp_path: Path) -> None:
    with EmbeddedRegistry.start(data_dir=tmp_path / "data") as reg:
        assert reg.host.startswith("127.0.0.1:")
        assert _get(f"{reg.url}/v2/") == (200, b"{}")
        status, body = _get(f"{reg.url}/v2/_catalog")
        assert status == 200
        assert json.loads(body) == {"repositories": []}


def test_stop_ends_the_process_and_frees_the_port(tmp_path: Path) -> None:
    reg = EmbeddedRegistry.start(data_dir=tmp_path / "data")
    reg.stop()
    assert not reg.running()
    assert _closed(reg.host)
    assert not reg.info.config.exists(), "the per-process config is removed on stop"
    reg.stop()  # idempotent


def test_pushed_images_outlive_the_registry_process(tmp_path: Path) -> None:
    # GIVEN an image pushed to one registry process
    with EmbeddedRegistry.start(data_dir=tmp_path / "data") as first:
        digest = _push_blob_and_manifest(first.url, "hello", "local")
    # WHEN a new process serves the same data dir on another port
    with EmbeddedRegistry.start(data_dir=tmp_path / "data") as second:
        req = urllib.request.Request(f"{second.url}/v2/hello/manifests/local", method="HEAD")
        req.add_header("Accept", "application/vnd.oci.image.manifest.v1+json")
        with urllib.request.urlopen(req) as r:
            # THEN it serves the image with the same digest
            assert r.headers["Docker-Content-Digest"] == digest
        assert json.loads(_get(f"{second.url}/v2/_catalog")[1]) == {"repositories": ["hello"]}


def test_data_lives_under_xdg_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert registry.default_data_dir() == tmp_path / "xdg" / "imagegate" / "registry"
    with EmbeddedRegistry.start() as reg:
        assert reg.info.data_dir == (tmp_path / "xdg" / "imagegate" / "registry").resolve()


def test_data_falls_back_to_home_cache_without_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert registry.default_data_dir() == tmp_path / ".cache" / "imagegate" / "registry"


def test_a_port_already_serving_is_refused(tmp_path: Path) -> None:
    with EmbeddedRegistry.start(data_dir=tmp_path / "a") as reg:
        port = int(reg.host.rsplit(":", 1)[1])
        with pytest.raises(LocalRunError, match="already answers"):
            EmbeddedRegistry.start(port=port, data_dir=tmp_path / "b")


def test_missing_binary_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LocalRunError, match="docker-registry is not installed") as info:
        EmbeddedRegistry.start(data_dir=tmp_path / "data")
    assert "scripts/setup" in (info.value.hint or "")


def test_serve_runs_in_the_foreground_until_interrupted(tmp_path: Path) -> None:
    port = registry.free_port()
    cmd = [sys.executable, "-m", "workflows.cli", "registry", "serve", "--port", str(port), "--data-dir", str(tmp_path)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert f"serving http://127.0.0.1:{port}" in line
        assert _get(f"http://127.0.0.1:{port}/v2/")[0] == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _closed(f"127.0.0.1:{port}")


def test_serve_reports_a_registry_that_died_on_its_own(tmp_path: Path) -> None:
    def crash(info: registry.RegistryInfo) -> None:
        os.kill(info.pid, signal.SIGKILL)

    with pytest.raises(LocalRunError, match="exited with status -9"):
        registry.serve(data_dir=tmp_path, on_ready=crash)
