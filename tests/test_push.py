"""steps.push against real skopeo and real docker-registry processes: verified pushes, and pushes that must fail."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from realworld import (
    BASE_IMAGE,
    Registry,
    auth_registry,
    base_image,
    buildah_store,
    docker_auth_file,
    registry,
    require_tools,
    run_step,
    start_registry,
    tls_registry,
    write_context,
)

from steps.contract import STEPS, Approval, BuildResult, Classification, Decision, FailureClass, Status

pytestmark = pytest.mark.real
__all__ = ["auth_registry", "base_image", "buildah_store", "registry", "tls_registry"]  # fixtures used by name

APPROVAL = Approval(decision=Decision.APPROVE, approver="alice", reason="ship it")


def build_archive(tmp: Path, store, files: dict[str, str | bytes], name: str) -> Path:
    write_context(tmp / "ws" / "ctx", f"FROM {BASE_IMAGE}\nCOPY . /app/\n", files)
    archive = tmp / f"{name}.oci.tar"
    proc = run_step(
        "build_runner", "--param", "context=ctx", "--param", f"destination=127.0.0.1:5000/t/{name}:1",
        "--workspace", str(tmp / "ws"), "--archive", str(archive), "--log", str(tmp / f"{name}.log"),
        "--out", str(tmp / f"out-{name}"), *store.args(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return archive


@pytest.fixture(scope="module")
def archive(tmp_path_factory, buildah_store, base_image) -> Path:
    """A small image as an OCI archive, built by build_runner."""
    require_tools("skopeo")
    return build_archive(tmp_path_factory.mktemp("archive"), buildah_store, {"hello.txt": "hello\n"}, "small")


@pytest.fixture(scope="module")
def big_archive(tmp_path_factory, buildah_store, base_image) -> Path:
    """An image with a 96 MiB incompressible layer: its upload takes long enough to be interrupted."""
    require_tools("skopeo")
    return build_archive(tmp_path_factory.mktemp("big"), buildah_store, {"blob.bin": os.urandom(96 << 20)}, "big")


def push(tmp: Path, archive: Path, destination: str, *extra: str, env: dict[str, str] | None = None):
    out = tmp / "out"
    proc = run_step("push", "--archive", str(archive), "--destination", destination, "--log", str(tmp / "push.log"),
                    "--out", str(out), *extra, env=env)
    values = {name: (out / name).read_text() for name in STEPS["push"].outputs if (out / name).exists()}
    return proc, values


def attempts_in(tmp: Path) -> int:
    return (tmp / "push.log").read_text().count("+ skopeo copy ")


def assert_failed_with(proc, out: dict[str, str], failure_class: FailureClass) -> Classification:
    assert proc.returncode == 1, proc.stderr
    result = BuildResult.model_validate_json(out["result"])
    assert result.status is Status.FAILED
    assert result.digest is None
    assert out["digest"] == out["IMAGE_DIGEST"] == out["image-url"] == ""
    classification = Classification.model_validate_json(out["classification"])
    assert classification == result.classification
    assert classification.class_ is failure_class, classification.message
    assert classification.fallback_allowed is False
    return classification


def test_push_reports_the_digest_the_registry_serves(tmp_path, archive, registry):
    proc, out = push(tmp_path, archive, registry.ref("team/app"), "--insecure", "--approval", APPROVAL.to_json())

    assert proc.returncode == 0, proc.stderr
    result = BuildResult.model_validate_json(out["result"])
    served = registry.manifest_digest("team/app", "1")  # HEAD /v2/ by urllib, not skopeo
    assert result.status is Status.SUCCEEDED and result.builder == "buildah"
    assert result.digest == served == out["digest"] == out["IMAGE_DIGEST"]
    assert result.image == out["image-url"] == out["IMAGE_URL"] == registry.ref("team/app")
    assert result.approval == APPROVAL
    assert out["classification"] == ""
    assert json.loads(proc.stdout) == json.loads(out["result"])


def test_push_takes_the_destination_from_the_request(tmp_path, archive, registry):
    request = json.dumps({"context": "ctx", "destination": registry.ref("team/from-request")})
    proc, out = push(tmp_path, archive, registry.ref("team/from-request"), "--insecure", "--request", request,
                     "--builder", "kaniko")
    assert proc.returncode == 0, proc.stderr
    assert BuildResult.model_validate_json(out["result"]).builder == "kaniko"
    assert registry.manifest_digest("team/from-request", "1") == out["digest"]


def test_push_with_the_right_credentials_succeeds(tmp_path, archive, auth_registry):
    auth = docker_auth_file(tmp_path / "auth.json", auth_registry.host, auth_registry.username,
                            auth_registry.password)
    proc, out = push(tmp_path, archive, auth_registry.ref("team/app"), "--insecure",
                     env={"REGISTRY_AUTH_FILE": str(auth)})
    assert proc.returncode == 0, proc.stderr
    assert auth_registry.manifest_digest("team/app", "1") == out["digest"]


def test_push_with_wrong_credentials_fails_as_registry_auth_without_retrying(tmp_path, archive, auth_registry):
    auth = docker_auth_file(tmp_path / "auth.json", auth_registry.host, auth_registry.username, "wrong-password")
    proc, out = push(tmp_path, archive, auth_registry.ref("team/denied"), "--insecure", "--backoff", "0.1",
                     env={"REGISTRY_AUTH_FILE": str(auth)})

    assert_failed_with(proc, out, FailureClass.REGISTRY_AUTH)
    assert attempts_in(tmp_path) == 1
    assert auth_registry.manifest_digest("team/denied", "1") is None


def test_push_to_a_closed_port_retries_then_fails_as_registry_unreachable(tmp_path, archive):
    closed = start_registry(tmp_path / "gone")
    closed.stop()  # the port was just served and is now closed: connection refused
    proc, out = push(tmp_path, archive, closed.ref("team/app"), "--insecure", "--attempts", "3", "--backoff", "0.05")

    classification = assert_failed_with(proc, out, FailureClass.REGISTRY_UNREACHABLE)
    assert "connection refused" in classification.message
    assert attempts_in(tmp_path) == 3
    assert (tmp_path / "push.log").read_text().count("retrying in") == 2


def test_registry_answering_500_is_retried_then_fails_as_registry_unreachable(tmp_path, archive):
    broken = start_registry(tmp_path / "broken", broken_storage=True)
    try:
        proc, out = push(tmp_path, archive, broken.ref("team/app"), "--insecure", "--attempts", "2",
                         "--backoff", "0.05")
    finally:
        broken.stop()

    assert "500 (Internal Server Error)" in (tmp_path / "push.log").read_text()
    assert_failed_with(proc, out, FailureClass.REGISTRY_UNREACHABLE)
    assert attempts_in(tmp_path) == 2


def test_push_to_a_tls_registry_with_an_untrusted_certificate_fails_as_config_error(tmp_path, archive, tls_registry):
    proc, out = push(tmp_path, archive, tls_registry.ref("team/app"), "--attempts", "3", "--backoff", "0.05")

    classification = assert_failed_with(proc, out, FailureClass.CONFIG_ERROR)
    assert "x509" in classification.message or "certificate" in classification.message
    assert attempts_in(tmp_path) == 1
    assert tls_registry.manifest_digest("team/app", "1") is None


def test_push_to_a_tls_registry_verifies_with_the_given_ca(tmp_path, archive, tls_registry):
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(tls_registry.ca, certs / "ca.crt")
    proc, out = push(tmp_path, archive, tls_registry.ref("team/trusted"), "--cert-dir", str(certs))

    assert proc.returncode == 0, proc.stderr
    assert tls_registry.manifest_digest("team/trusted", "1") == out["digest"]


def test_registry_killed_mid_push_fails_and_never_reports_success(tmp_path, big_archive):
    # GIVEN a registry of our own, and a push of a large layer under way
    reg = start_registry(tmp_path / "doomed")
    out = tmp_path / "out"
    push_proc = subprocess.Popen(
        [sys.executable, "-m", "steps.push", "--archive", str(big_archive), "--destination", reg.ref("team/big"),
         "--insecure",
         "--attempts", "2", "--backoff", "0.05", "--log", str(tmp_path / "push.log"), "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        # WHEN the registry dies (SIGKILL) while it is receiving the layer
        manifest = reg.storage / "docker/registry/v2/repositories/team/big/_manifests/tags/1"
        deadline = time.monotonic() + 60
        while not reg.uploads_in_progress():
            assert push_proc.poll() is None, "the push finished before the registry could be killed"
            assert time.monotonic() < deadline, "no upload started within 60 s"
            time.sleep(0.005)
        reg.kill()
        assert not manifest.exists(), "the push had completed before the kill"
        stdout, stderr = push_proc.communicate(timeout=120)
    finally:
        if push_proc.poll() is None:
            push_proc.kill()
        reg.stop()
    # THEN the push fails as unreachable, with nothing claimed
    values = {name: (out / name).read_text() for name in STEPS["push"].outputs}
    classification = assert_failed_with(push_proc, values, FailureClass.REGISTRY_UNREACHABLE)
    assert classification.fallback_allowed is False
    assert "succeeded" not in stdout


def test_push_without_a_destination_is_a_usage_error(tmp_path, archive):
    proc = run_step("push", "--archive", str(archive), "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "--destination" in proc.stderr


def test_registry_fixture_serves_v2_and_stops_by_pid(tmp_path):
    reg: Registry = start_registry(tmp_path / "r")
    assert reg.answers()
    reg.stop()
    assert reg.process.poll() is not None and not reg.answers()
