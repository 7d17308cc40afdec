"""synthetic: a deterministic, clearly marked result, only for a classification that allows it."""

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from steps.context_hash import hash_context
from steps.contract import (
    Approval,
    Builder,
    BuildRequest,
    BuildResult,
    Classification,
    Decision,
    FailureClass,
    Mode,
    PushSkippedReason,
    Status,
)
from steps.synthetic import Refused, synthesize, synthetic_digest

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = Classification(
    class_=FailureClass.BUILDER_RUNTIME_UNAVAILABLE,
    fallback_allowed=True,
    signature="userns-unshare-enosys",
    message="Error during unshare(CLONE_NEWUSER): Function not implemented",
)
REQUEST = BuildRequest(context="app", destination="127.0.0.1:5000/demo:1", build_args={"V": "1"})


def make_context(ws: Path) -> Path:
    app = ws / "app"
    (app / "src" / "empty").mkdir(parents=True)
    (app / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (app / "src" / "main.sh").write_text("#!/bin/sh\necho hi\n")
    (app / "src" / "main.sh").chmod(0o755)
    (app / "src" / "data.txt").write_bytes(b"payload\n")
    (app / "link").symlink_to("src/data.txt")
    return app


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    make_context(workspace)
    return workspace


def run_synthetic(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "steps.synthetic", "--out", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return proc, out


def test_step_writes_the_marked_synthetic_result(tmp_path, ws):
    approval = Approval(decision=Decision.APPROVE, approver="alice")
    proc, out = run_synthetic(
        tmp_path,
        "--request", REQUEST.to_json(), "--classification", RUNTIME.to_json(), "--approval", approval.to_json(),
        "--fallback", "allowed", "--workspace", str(ws),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = BuildResult.model_validate_json((out / "result").read_text())
    assert (result.status, result.builder, result.simulated) == (Status.SYNTHETIC, Builder.SYNTHETIC, True)
    assert result.push_skipped_reason is PushSkippedReason.BUILDER_RUNTIME_UNAVAILABLE
    assert result.classification == RUNTIME and result.approval == approval
    assert result.image == REQUEST.destination
    assert (out / "digest").read_text() == result.digest == synthetic_digest(REQUEST, ws)
    assert "derived from the request" in result.message
    assert BuildResult.model_validate_json(proc.stdout) == result


def test_same_request_gives_the_same_digest_twice_as_a_process(tmp_path, ws):
    digests = []
    for i in range(2):
        proc, out = run_synthetic(
            tmp_path / str(i), "--request", REQUEST.to_json(), "--classification", RUNTIME.to_json(),
            "--workspace", str(ws),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        digests.append((out / "digest").read_text())
    assert digests[0] == digests[1] and digests[0].startswith("sha256:")


def test_digest_ignores_where_when_and_by_whom_the_context_was_written(tmp_path, ws):
    # GIVEN the same tree written again elsewhere, later, by another owner, with another umask
    other = tmp_path / "elsewhere" / "ws"
    old_umask = os.umask(0o077)
    try:
        make_context(other)
    finally:
        os.umask(old_umask)
    os.utime(other / "app" / "Dockerfile", (0, 0))
    if os.geteuid() == 0:
        os.chown(other / "app" / "src" / "data.txt", 12345, 12345)
    # THEN the digest is the same
    assert synthetic_digest(REQUEST, other) == synthetic_digest(REQUEST, ws)


def _append(path: Path) -> None:
    path.write_text(path.read_text() + "x")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda app: _append(app / "src" / "data.txt"), id="file-content"),
        pytest.param(lambda app: (app / "new.txt").write_text(""), id="file-added"),
        pytest.param(lambda app: (app / "src" / "data.txt").rename(app / "src" / "data2.txt"), id="file-renamed"),
        pytest.param(lambda app: (app / "src" / "main.sh").chmod(0o644), id="executable-bit"),
        pytest.param(lambda app: (app / "src" / "data.txt").chmod(0o4644), id="setuid-bit"),
        pytest.param(
            lambda app: ((app / "link").unlink(), (app / "link").symlink_to("Dockerfile")), id="symlink-target"
        ),
        pytest.param(lambda app: (app / "src" / "empty" / "d").mkdir(), id="empty-dir-added"),
        pytest.param(lambda app: (app / "src" / "empty").rmdir(), id="empty-dir-removed"),
        pytest.param(
            lambda app: ((app / "link").unlink(), shutil.copy(app / "src" / "data.txt", app / "link")),
            id="symlink-replaced-by-copy",
        ),
    ],
)
def test_any_change_to_the_context_changes_the_digest(ws, change):
    before = synthetic_digest(REQUEST, ws)
    change(ws / "app")
    assert synthetic_digest(REQUEST, ws) != before


@pytest.mark.parametrize(
    "update",
    [
        pytest.param({"build_args": {"V": "2"}}, id="build-args"),
        pytest.param({"destination": "127.0.0.1:5000/demo:2"}, id="destination"),
        pytest.param({"dockerfile": "Containerfile"}, id="dockerfile"),
        pytest.param({"labels": {"a": "b"}}, id="labels"),
    ],
)
def test_any_change_to_the_request_changes_the_digest(ws, update):
    assert synthetic_digest(REQUEST.model_copy(update=update), ws) != synthetic_digest(REQUEST, ws)


def test_mode_bits_other_than_exec_and_set_id_do_not_count(ws):
    before = synthetic_digest(REQUEST, ws)
    (ws / "app" / "src" / "data.txt").chmod(0o600)
    (ws / "app" / "src" / "main.sh").chmod(0o700)
    assert synthetic_digest(REQUEST, ws) == before


@pytest.mark.parametrize("compression", ["", "gz"], ids=["tar", "tar-gz"])
def test_tar_context_hashes_like_the_same_directory(tmp_path, ws, compression):
    archive = ws / f"app.tar{'.' + compression if compression else ''}"
    with tarfile.open(archive, f"w:{compression}") as tar:
        for child in sorted((ws / "app").iterdir(), reverse=True):  # member order must not matter
            tar.add(child, arcname=f"./{child.name}")
    assert hash_context(archive) == hash_context(ws / "app")
    tar_request = REQUEST.model_copy(update={"context": archive.name})
    assert synthetic_digest(tar_request, ws).startswith("sha256:")


def test_workspace_absolute_context_is_read_from_the_mounted_workspace(ws):
    absolute = REQUEST.model_copy(update={"context": "/workspace/app"})
    before = synthetic_digest(absolute, ws)
    _append(ws / "app" / "Dockerfile")
    assert synthetic_digest(absolute, ws) != before


def test_remote_context_hashes_the_request_alone(tmp_path):
    remote = BuildRequest(context="git://example.com/repo.git#main", destination="127.0.0.1:5000/demo:1")
    assert synthetic_digest(remote, tmp_path / "nowhere") == synthetic_digest(remote, tmp_path / "elsewhere")


@pytest.mark.parametrize(
    "cls",
    [c for c in FailureClass if c is not FailureClass.BUILDER_RUNTIME_UNAVAILABLE],
    ids=lambda c: c.value,
)
def test_step_refuses_a_classification_that_does_not_allow_fallback(tmp_path, ws, cls):
    classification = Classification(class_=cls, fallback_allowed=False, signature=None, message="m")
    proc, out = run_synthetic(
        tmp_path, "--request", REQUEST.to_json(), "--classification", classification.to_json(), "--workspace", str(ws)
    )
    assert proc.returncode == 1
    assert f"classification {cls.value} does not allow a synthetic fallback" in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("request_update", "fallback", "reason"),
    [
        pytest.param({"strict": True}, None, "strict", id="strict-request"),
        pytest.param({}, "forbidden", "fallback=forbidden", id="validate-forbade-fallback"),
    ],
)
def test_synthesize_refuses_what_policy_or_the_request_forbid(ws, request_update, fallback, reason):
    with pytest.raises(Refused, match=reason):
        synthesize(REQUEST.model_copy(update=request_update), RUNTIME, workspace=ws, fallback=fallback)


def test_requested_synthetic_mode_needs_no_classification(ws):
    request = REQUEST.model_copy(update={"mode": Mode.SYNTHETIC})
    result = synthesize(request, None, workspace=ws)
    assert result.status is Status.SYNTHETIC and result.classification.signature is None
    with pytest.raises(Refused, match="--classification is required"):
        synthesize(REQUEST, None, workspace=ws)


def test_step_reports_a_missing_context_and_bad_json(tmp_path):
    proc, out = run_synthetic(
        tmp_path, "--request", REQUEST.to_json(), "--classification", RUNTIME.to_json(),
        "--workspace", str(tmp_path / "empty"),
    )  # fmt: skip
    assert proc.returncode == 1 and "not in the workspace" in proc.stderr and not out.exists()
    proc, _ = run_synthetic(tmp_path, "--request", "{}", "--classification", RUNTIME.to_json())
    assert proc.returncode == 1 and "--request: context: Field required" in proc.stderr


def test_hashing_a_large_context_streams_in_flat_memory(tmp_path):
    # A sparse 1 GiB file reads as zeros: real hashing work, no disk space. VmHWM, not ru_maxrss:
    # a child inherits the parent's ru_maxrss across fork and exec, the high-water mark resets.
    big = tmp_path / "big"
    big.mkdir()
    with (big / "zeros.bin").open("wb") as f:
        f.truncate(1024**3)
    script = (
        "import sys; from pathlib import Path; from steps.context_hash import hash_context; "
        "hash_context(Path(sys.argv[1])); print(Path('/proc/self/status').read_text().split('VmHWM:')[1].split()[0])"
    )
    out = subprocess.run([sys.executable, "-c", script, str(big)], cwd=ROOT, capture_output=True, text=True, check=True)
    assert int(out.stdout) <= 64 * 1024  # KiB: the brief's bound, with the interpreter and pydantic loaded


def test_step_help_works():
    proc = subprocess.run([sys.executable, "-m", "steps.synthetic", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "--classification" in proc.stdout


def test_context_hash_follows_its_documented_encoding(tmp_path):
    # GIVEN a tiny tree: an executable file, a plain file, a directory holding a symlink
    root = tmp_path / "ctx"
    (root / "d").mkdir(parents=True)
    (root / "run").write_bytes(b"#!/bin/sh\n")
    (root / "run").chmod(0o750)
    (root / "x").write_bytes(b"x")
    (root / "d" / "l").symlink_to("../x")

    def rec(kind: bytes, path: bytes, *fields: bytes) -> bytes:
        return kind + b"".join(len(f).to_bytes(8, "big") + f for f in (path, *fields))

    # THEN the hash is exactly the one the module docstring specifies, in path-component order
    expected = hashlib.sha256(
        b"imagegate-context/v1\n"
        + rec(b"d", b"d")
        + rec(b"l", b"d/l", b"../x")
        + rec(b"f", b"run", b"111", hashlib.sha256(b"#!/bin/sh\n").digest())
        + rec(b"f", b"x", b"0", hashlib.sha256(b"x").digest())
    ).hexdigest()
    assert hash_context(root) == expected
