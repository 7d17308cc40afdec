"""steps.build_runner against real buildah: archives, labels and build args, the layer cache, must-fail builds."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from realworld import (
    BASE_IMAGE,
    BuildahStore,
    base_image,
    buildah_store,
    builder_user,
    make_base_image,
    run_step,
    write_context,
)

from steps.contract import STEPS, BuildResult, FailureClass, Status

pytestmark = pytest.mark.real
__all__ = ["base_image", "buildah_store", "builder_user"]  # fixtures used by name below

DOCKERFILE = f"""FROM {BASE_IMAGE}
ARG GREETING=unset
COPY hello.txt /hello.txt
RUN echo "greeting=$GREETING" > /greeting && cat /greeting
"""


def outputs(out: Path) -> dict[str, str]:
    return {name: (out / name).read_text() for name in STEPS["build-runner"].outputs}


def build(tmp: Path, store_args: list[str], dockerfile: str = DOCKERFILE, params: tuple[str, ...] = ()):
    write_context(tmp / "ws" / "app", dockerfile, {"hello.txt": "hello\n"})
    args = [
        "--param", "context=app",
        "--param", "destination=127.0.0.1:5000/team/app:1",
        *[a for p in params for a in ("--param", p)],
        "--workspace", str(tmp / "ws"), "--archive", str(tmp / "ws" / "image.oci.tar"),
        "--log", str(tmp / "ws" / "build.log"), "--out", str(tmp / "out"),
        *store_args,
    ]
    return run_step("build_runner", *args), outputs(tmp / "out")


def archive_config(archive: Path) -> dict:
    out = subprocess.run(["skopeo", "inspect", "--config", f"oci-archive:{archive}"],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def archive_manifest_digest(archive: Path) -> str:
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))
    return index["manifests"][0]["digest"]


def classify(tmp: Path, log_text: str, exit_code: str) -> dict:
    log = tmp / "classify.log"
    log.write_text(log_text)
    proc = run_step("classify", "--log", str(log), "--exit-code", exit_code, "--builder", "buildah")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_build_writes_an_oci_archive_with_the_requests_labels_and_build_args(tmp_path, buildah_store, base_image):
    proc, out = build(tmp_path, buildah_store.args(),
                      params=('build-args={"GREETING":"hi"}', 'labels={"org.example.team":"platform"}'))

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out["exit-code"] == "0"
    assert out["archive"] == str(tmp_path / "ws" / "image.oci.tar")
    assert out["digest"] == archive_manifest_digest(Path(out["archive"]))
    config = archive_config(Path(out["archive"]))
    assert config["config"]["Labels"]["org.example.team"] == "platform"
    log = (tmp_path / "ws" / "build.log").read_text()
    assert "greeting=hi" in log
    assert "--isolation chroot --timestamp 0 --layers" in log
    assert out["log-tail"] == log[-4096:]


def test_unchanged_rebuild_with_a_cache_dir_reuses_every_layer_and_the_digest(tmp_path):
    # GIVEN a cache dir whose storage holds the base image (nothing is pulled here)
    cache = tmp_path / "cache"
    make_base_image(BuildahStore(root=cache / "storage", runroot=cache / "run"), tmp_path / "base")
    # WHEN the same request is built twice against it
    cache_args = ["--storage-driver", "vfs", "--cache-dir", str(cache)]
    first, out1 = build(tmp_path / "a", cache_args)
    second, out2 = build(tmp_path / "b", cache_args)
    # THEN the second build takes every step from the cache and yields the same image
    assert first.returncode == 0 and second.returncode == 0, out1["log-tail"] + out2["log-tail"]
    log = (tmp_path / "b" / "ws" / "build.log").read_text()
    assert log.count("--> Using cache") == DOCKERFILE.count("\n") - 1  # every step after FROM
    assert out1["digest"] == out2["digest"]


def test_tar_context_is_unpacked_and_built(tmp_path, buildah_store, base_image):
    ctx = write_context(tmp_path / "src", DOCKERFILE, {"hello.txt": "from a tar\n"})
    (tmp_path / "ws").mkdir()
    with tarfile.open(tmp_path / "ws" / "context.tar", "w") as tar:
        for path in ctx.iterdir():
            tar.add(path, arcname=path.name)
    proc = run_step(
        "build_runner", "--param", "context=/workspace/context.tar", "--param", "destination=127.0.0.1:5000/t/a:1",
        "--workspace", str(tmp_path / "ws"), "--archive", str(tmp_path / "ws" / "img.tar"),
        "--log", str(tmp_path / "ws" / "build.log"), "--out", str(tmp_path / "out"), *buildah_store.args(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "ws" / "img.tar").is_file()


MUST_FAIL = {
    "copy-of-a-missing-file": (f"FROM {BASE_IMAGE}\nCOPY missing.txt /missing.txt\n", "missing.txt"),
    "dockerfile-syntax-error": (f"FROM {BASE_IMAGE}\nCOPPY hello.txt /hello.txt\n", "Unknown instruction"),
}


@pytest.mark.parametrize(("dockerfile", "evidence"), MUST_FAIL.values(), ids=MUST_FAIL.keys())
def test_broken_build_fails_with_buildahs_code_no_archive_and_a_build_error(
    tmp_path, buildah_store, base_image, dockerfile, evidence
):
    proc, out = build(tmp_path, buildah_store.args(), dockerfile=dockerfile)

    assert proc.returncode != 0
    assert out["exit-code"] == str(proc.returncode)
    assert out["archive"] == "" and out["digest"] == ""
    assert not (tmp_path / "ws" / "image.oci.tar").exists()
    assert evidence in out["log-tail"]
    verdict = classify(tmp_path, (tmp_path / "ws" / "build.log").read_text(), out["exit-code"])
    assert verdict["class"] == FailureClass.BUILD_ERROR
    assert verdict["fallback_allowed"] is False
    # and the run's final result (report, as onExit) is a failure carrying that class
    final = run_step("report", "--workflow-status", "Failed", "--decision", "approve", "--mode", "runner",
                     "--build-classification", json.dumps(verdict), "--out", str(tmp_path / "report"))
    result = BuildResult.model_validate_json(final.stdout)
    assert result.status is Status.FAILED and result.classification.class_ is FailureClass.BUILD_ERROR


def test_run_step_exiting_non_zero_fails_with_that_code_and_never_falls_back(tmp_path, buildah_store, base_image):
    proc, out = build(tmp_path, buildah_store.args(), dockerfile=f"FROM {BASE_IMAGE}\nRUN exit 3\n")

    assert proc.returncode == int(out["exit-code"]) != 0
    assert out["archive"] == ""
    assert 'building at STEP "RUN exit 3"' in out["log-tail"]
    verdict = classify(tmp_path, (tmp_path / "ws" / "build.log").read_text(), out["exit-code"])
    assert verdict["fallback_allowed"] is False and verdict["class"] != FailureClass.SUCCEEDED


def test_bad_request_still_writes_every_output_and_exits_2(tmp_path):
    proc = run_step("build_runner", "--param", "context=app", "--param", "destination=not a reference",
                    "--workspace", str(tmp_path), "--log", str(tmp_path / "build.log"), "--out", str(tmp_path / "out"))

    assert proc.returncode == 2
    out = outputs(tmp_path / "out")
    assert out["exit-code"] == "2" and out["archive"] == ""
    assert "destination" in out["log-tail"] and "destination" in proc.stderr


def test_missing_dockerfile_names_the_path(tmp_path, buildah_store):
    proc, out = build(tmp_path, buildah_store.args(), params=("dockerfile=nope/Dockerfile",))
    assert proc.returncode == 2
    assert "'nope/Dockerfile' not found" in out["log-tail"]


def test_builds_rootless_as_an_unprivileged_user(builder_user):
    # GIVEN the builder user's own store, base image and workspace (rootless: vfs, chroot isolation)
    scratch = builder_user.mkdtemp("rootless-")
    store = BuildahStore(root=scratch / "root", runroot=scratch / "run")
    make_base_image(store, scratch / "base", user=builder_user)
    write_context(scratch / "ws" / "app", DOCKERFILE, {"hello.txt": "hello\n"})
    builder_user.chown(scratch)
    # WHEN build_runner runs as that user
    proc = run_step(
        "build_runner", "--param", "context=app", "--param", "destination=127.0.0.1:5000/t/rootless:1",
        "--workspace", str(scratch / "ws"), "--archive", str(scratch / "ws" / "img.tar"),
        "--log", str(scratch / "ws" / "build.log"), "--out", str(scratch / "out"), *store.args(),
        user=builder_user,
    )
    # THEN it builds in a user namespace and writes the archive
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (scratch / "out" / "archive").read_text() == str(scratch / "ws" / "img.tar")
    assert (scratch / "ws" / "img.tar").stat().st_uid == builder_user.uid


def test_help_describes_the_outputs():
    proc = run_step("build_runner", "--help")
    assert proc.returncode == 0 and "--cache-dir" in proc.stdout
