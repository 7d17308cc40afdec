"""End to end with real runtime faults: rootless buildah where user namespaces are refused.

For each fault the real `steps.build_runner` runs as the unprivileged builder user under
tests/faults.py (seccomp ENOSYS or EPERM on unshare/clone with CLONE_NEWUSER, or a child
user namespace whose max_user_namespaces is 0, which gives ENOSPC). buildah's real log then
goes through `steps.classify`, and on to `steps.synthetic` (non-strict) or `steps.report`
(strict), each as a process, exactly as the pipeline chains them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from faults import fault_command
from realworld import BASE_IMAGE, BuilderUser, builder_user, require_tools, run_step, write_context

from steps.contract import (
    STEPS,
    Builder,
    BuildRequest,
    BuildResult,
    Classification,
    FailureClass,
    PushSkippedReason,
    Status,
)

pytestmark = pytest.mark.real
__all__ = ["builder_user"]  # fixture used by name

# What rootless buildah prints first when the user namespace is refused (machine.md 5a, 5b, 5d).
FAULTS = {
    "seccomp-enosys": ({"errno_name": "ENOSYS"}, "Error during unshare(CLONE_NEWUSER): Function not implemented"),
    "seccomp-eperm": ({"errno_name": "EPERM"}, "Error during unshare(CLONE_NEWUSER): Operation not permitted"),
    "max-user-namespaces-0": (
        {"max_user_namespaces": 0}, "Error during unshare(CLONE_NEWUSER): No space left on device"),
}
DESTINATION = "registry.example.com/team/app:1"


def request(strict: bool) -> BuildRequest:
    return BuildRequest(context="app", destination=DESTINATION, strict=strict,
                        build_args={"VERSION": "1.0"}, labels={"team": "platform"})


def params(req: BuildRequest) -> list[str]:
    return [a for name, value in req.to_parameters().items() for a in ("--param", f"{name}={value}")]


def faulted_build(user: BuilderUser, fault: dict, req: BuildRequest) -> tuple[Path, dict[str, str], str]:
    """build_runner as the builder user under `fault`: (workspace, its outputs, its stderr)."""
    ws = user.mkdtemp("fault-ws-")
    write_context(ws / "app", f"FROM {BASE_IMAGE}\nARG VERSION\nCOPY hello.txt /\n", {"hello.txt": "hi\n"})
    user.chown(ws)
    prefix = fault_command([], user=f"{user.uid}:{user.gid}", **fault)
    proc = run_step(
        "build_runner", *params(req), "--workspace", str(ws), "--archive", str(ws / "image.oci.tar"),
        "--log", str(ws / "build.log"), "--out", str(ws / "out"),
        "--storage-driver", "vfs", "--root", str(ws / "store"), "--runroot", str(ws / "run"),
        user=user, prefix=prefix,
    )
    outputs = {name: (ws / "out" / name).read_text() for name in STEPS["build-runner"].outputs}
    assert proc.returncode == int(outputs["exit-code"]), proc.stderr
    return ws, outputs, proc.stderr


def classify(ws: Path, exit_code: str) -> Classification:
    proc = run_step("classify", "--log", str(ws / "build.log"), "--exit-code", exit_code, "--builder", "buildah",
                    "--out", str(ws / "classify"))
    assert proc.returncode == 0, proc.stderr
    assert (ws / "classify" / "class").read_text() == json.loads(proc.stdout)["class"]
    return Classification.model_validate_json(proc.stdout)


def synthetic(ws: Path, req: BuildRequest, classification: Classification) -> BuildResult:
    out = ws / "synthetic"
    proc = run_step("synthetic", "--request", req.to_json(), "--classification", classification.to_json(),
                    "--workspace", str(ws), "--out", str(out))
    assert proc.returncode in (0, 3), proc.stderr  # 3 is the CLI's "synthetic" status, should the step use it
    result = BuildResult.model_validate_json((out / "result").read_text())
    assert (out / "digest").read_text() == result.digest
    return result


def report(ws: Path, req: BuildRequest, fallback: str, **outputs: str) -> BuildResult:
    # The build node failed either way; what follows it decides the result.
    args = ["--workflow-status", "Failed",
            "--failures", json.dumps([{"displayName": "build-runner", "templateName": "build-runner",
                                       "message": "Error (exit code 1)", "phase": "Failed"}]),
            "--decision", "approve", "--approver", "alice", "--request", req.to_json(), "--fallback", fallback,
            "--mode", "runner", "--out", str(ws / "report")]
    for name, value in outputs.items():
        args += [f"--{name.replace('_', '-')}", value]
    proc = run_step("report", *args)
    result = BuildResult.model_validate_json((ws / "report" / "result").read_text())
    assert proc.returncode == (1 if result.status is Status.FAILED else 0), proc.stderr
    return result


@pytest.fixture(scope="module", autouse=True)
def _tools():
    require_tools("buildah", "newuidmap")


@pytest.mark.parametrize(("fault", "first_line"), FAULTS.values(), ids=FAULTS.keys())
def test_refused_user_namespace_classifies_as_runtime_unavailable_and_goes_synthetic(builder_user, fault, first_line):
    # GIVEN a non-strict request, built rootless on a node that refuses user namespaces
    req = request(strict=False)
    ws, built, _ = faulted_build(builder_user, fault, req)
    # THEN buildah's own error is in the log and the build failed without an archive
    log = (ws / "build.log").read_text()
    assert first_line in log.splitlines()
    assert built["exit-code"] == "1" and built["archive"] == ""
    # WHEN the real log is classified
    classification = classify(ws, built["exit-code"])
    assert classification.class_ is FailureClass.BUILDER_RUNTIME_UNAVAILABLE
    assert classification.fallback_allowed is True
    assert classification.signature
    # AND the synthetic step runs, as the pipeline does for a non-strict request
    result = synthetic(ws, req, classification)
    assert result.status is Status.SYNTHETIC and result.simulated
    assert result.builder is Builder.SYNTHETIC
    assert result.push_skipped_reason is PushSkippedReason.BUILDER_RUNTIME_UNAVAILABLE
    assert result.classification == classification
    # AND report passes the synthetic result on as the run's result
    final = report(ws, req, "allowed", build_classification=classification.to_json(),
                   synthetic_result=result.to_json())
    assert final.status is Status.SYNTHETIC and final.digest == result.digest
    assert final.approval.approver == "alice"


@pytest.mark.parametrize(("fault", "first_line"), FAULTS.values(), ids=FAULTS.keys())
def test_strict_request_fails_carrying_the_runtime_classification(builder_user, fault, first_line):
    req = request(strict=True)
    ws, built, _ = faulted_build(builder_user, fault, req)
    classification = classify(ws, built["exit-code"])
    assert classification.class_ is FailureClass.BUILDER_RUNTIME_UNAVAILABLE
    # The synthetic step refuses a strict request even if a template ran it by mistake
    refused = run_step("synthetic", "--request", req.to_json(), "--classification", classification.to_json(),
                       "--workspace", str(ws), "--out", str(ws / "synthetic"))
    assert refused.returncode != 0 and not (ws / "synthetic" / "result").exists()

    final = report(ws, req, "forbidden", build_classification=classification.to_json())

    assert final.status is Status.FAILED
    assert final.classification == classification
    assert not final.simulated and final.digest is None
    assert first_line in final.classification.message or final.classification.signature


def test_same_request_gives_the_same_synthetic_digest_twice(builder_user):
    req = request(strict=False)
    digests = []
    for _ in range(2):
        ws, built, _ = faulted_build(builder_user, FAULTS["seccomp-enosys"][0], req)
        digests.append(synthetic(ws, req, classify(ws, built["exit-code"])).digest)
    assert digests[0] == digests[1]
    assert digests[0].startswith("sha256:")
