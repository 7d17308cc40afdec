"""steps.report as a process: the final result for every way a run can end."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from realworld import run_step

from steps.contract import (
    Approval,
    Builder,
    BuildRequest,
    BuildResult,
    Classification,
    Decision,
    FailureClass,
    PushSkippedReason,
    Status,
)

DESTINATION = "registry.example.com/team/app:1"
DIGEST = "sha256:" + "ab" * 32
REQUEST = BuildRequest(context="app", destination=DESTINATION)
STRICT = REQUEST.model_copy(update={"strict": True})
NO_PUSH = REQUEST.model_copy(update={"push": False})
RUNTIME = Classification(class_=FailureClass.BUILDER_RUNTIME_UNAVAILABLE, fallback_allowed=True,
                         signature="userns-unshare-enosys",
                         message="Error during unshare(CLONE_NEWUSER): Function not implemented")
AUTH = Classification(class_=FailureClass.REGISTRY_AUTH, fallback_allowed=False, signature="x", message="401")
PUSHED = BuildResult(status=Status.SUCCEEDED, builder=Builder.BUILDAH, image=DESTINATION, digest=DIGEST)
SYNTHETIC = BuildResult(status=Status.SYNTHETIC, builder=Builder.SYNTHETIC, simulated=True, image=DESTINATION,
                        digest="sha256:" + "cd" * 32, classification=RUNTIME,
                        push_skipped_reason=PushSkippedReason.BUILDER_RUNTIME_UNAVAILABLE)


def failure(template: str, message: str) -> dict[str, str]:
    return {"displayName": template, "message": message, "templateName": template, "phase": "Failed",
            "podName": f"image-build-x-{template}-1", "finishedAt": "2026-12-04T10:00:00Z"}


def report(*args: str, status: str = "Succeeded", failures: list | str = "") -> BuildResult:
    """Run the report step as a process; the result it wrote, checked equal to what it printed."""
    raw = failures if isinstance(failures, str) else json.dumps(failures)
    with tempfile.TemporaryDirectory() as out:
        proc = run_step("report", "--workflow-status", status, "--failures", raw, *args, "--out", out)
        written = (Path(out) / "result").read_text()
    assert json.loads(proc.stdout) == json.loads(written)
    result = BuildResult.model_validate_json(written)
    # A failed or rejected result fails the exit handler, so the Workflow phase says so too.
    expected = 1 if result.status in (Status.FAILED, Status.REJECTED) else 0
    assert proc.returncode == expected, proc.stderr
    return result


APPROVED = ("--decision", "approve", "--approver", "alice", "--reason", "ok", "--request", REQUEST.to_json(),
            "--mode", "runner")


def test_verified_push_is_the_result_with_the_approval_record():
    result = report(*APPROVED, "--push-result", PUSHED.to_json())
    assert result.status is Status.SUCCEEDED and result.digest == DIGEST
    assert result.approval == Approval(decision=Decision.APPROVE, approver="alice", reason="ok")


@pytest.mark.parametrize(
    ("decision", "approver", "reason"),
    [("reject", "bob", "not today"), ("timeout", "", "")],
    ids=["rejected-by-an-approver", "approval-timed-out"],
)
def test_reject_or_timeout_is_rejected_and_never_pushed(decision, approver, reason):
    result = report("--decision", decision, "--approver", approver, "--reason", reason,
                    "--request", REQUEST.to_json())
    assert result.status is Status.REJECTED
    assert result.push_skipped_reason is PushSkippedReason.REJECTED
    assert result.digest is None
    assert result.approval.decision is Decision.REJECT
    assert result.approval.approver == (approver or None)


def test_invalid_request_fails_as_config_error_with_the_field_lines():
    result = report("--validate-error", "destination: not allowlisted: ask for evil.example.com",
                    status="Failed", failures=[failure("validate", "exit code 1")])
    assert result.status is Status.FAILED
    assert result.classification.class_ is FailureClass.CONFIG_ERROR
    assert "destination: not allowlisted" in result.classification.message


def test_failed_validate_node_without_its_error_output_is_still_config_error():
    result = report(status="Failed", failures=[failure("validate", "OOMKilled")])
    assert result.classification.class_ is FailureClass.CONFIG_ERROR


def test_strict_runtime_failure_fails_carrying_the_build_classification():
    result = report("--decision", "approve", "--request", STRICT.to_json(), "--fallback", "forbidden",
                    "--mode", "runner", "--build-classification", RUNTIME.to_json(),
                    status="Failed", failures=[failure("build-runner", "exit code 1")])
    assert result.status is Status.FAILED
    assert result.classification == RUNTIME
    assert result.builder is Builder.BUILDAH and not result.simulated


def test_synthetic_result_is_the_result_when_the_fallback_is_allowed():
    result = report(*APPROVED, "--fallback", "allowed", "--build-classification", RUNTIME.to_json(),
                    "--synthetic-result", SYNTHETIC.to_json())
    assert result.status is Status.SYNTHETIC and result.simulated
    assert result.approval.approver == "alice"


@pytest.mark.parametrize(
    "args",
    [("--fallback", "forbidden"), ("--request", STRICT.to_json())],
    ids=["policy-forbids", "strict-request"],
)
def test_synthetic_result_is_refused_when_the_fallback_is_forbidden(args):
    result = report("--decision", "approve", "--request", REQUEST.to_json(), *args,
                    "--synthetic-result", SYNTHETIC.to_json())
    assert result.status is Status.FAILED
    assert result.classification == RUNTIME


def test_push_failure_carries_the_push_classification():
    result = report(*APPROVED, "--push-classification", AUTH.to_json(), status="Failed",
                    failures=[failure("push", "exit code 1")])
    assert result.status is Status.FAILED and result.classification == AUTH


def test_unknown_failure_is_unclassified_and_names_the_failed_node():
    result = report(*APPROVED, status="Error", failures=[failure("probe", "pod deleted")])
    assert result.classification.class_ is FailureClass.UNCLASSIFIED
    assert result.classification.fallback_allowed is False
    assert "probe: pod deleted" in result.classification.message


def test_succeeded_workflow_without_a_verified_push_is_never_success():
    result = report(*APPROVED)
    assert result.status is Status.FAILED
    assert result.classification.class_ is FailureClass.UNCLASSIFIED


def test_push_false_with_a_build_digest_succeeds_without_a_push():
    result = report("--decision", "approve", "--request", NO_PUSH.to_json(), "--mode", "kaniko",
                    "--build-digest", DIGEST)
    assert result.status is Status.SUCCEEDED and result.digest == DIGEST
    assert result.push_skipped_reason is PushSkippedReason.NO_PUSH_REQUESTED
    assert result.builder is Builder.KANIKO


def test_outputs_of_steps_that_never_ran_count_as_absent():
    # Argo leaves {{...}} in place when a global output was never set.
    result = report("--decision", "reject", "--push-result", "{{workflow.outputs.parameters.push-result}}",
                    failures="{{workflow.failures}}")
    assert result.status is Status.REJECTED


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--push-result", "{not json"), ("--failures", '{"a": 1}'), ("--decision", "maybe")],
    ids=["push-result", "failures", "decision"],
)
def test_malformed_argument_is_a_usage_error_naming_it_and_still_a_failed_result(tmp_path, flag, value):
    args = ["--workflow-status", "Succeeded", flag, value, "--out", str(tmp_path)]
    proc = run_step("report", *args)
    assert proc.returncode == 2
    assert flag in proc.stderr
    # The run still ends with a result: failed and unclassified, never a guessed success.
    result = BuildResult.model_validate_json((tmp_path / "result").read_text())
    assert result.status is Status.FAILED
    assert result.classification is not None and result.classification.class_ is FailureClass.UNCLASSIFIED
    assert flag in result.classification.message


def test_failures_json_encoded_twice_is_read_as_the_list():
    # Argo may hand {{workflow.failures}} over as a JSON string that holds the JSON list.
    twice = json.dumps(json.dumps([failure("validate", "exit code 1")]))
    result = report("--validate-error", "destination: not allowlisted", status="Failed", failures=twice)
    assert result.status is Status.FAILED
    assert result.classification is not None and result.classification.class_ is FailureClass.CONFIG_ERROR
