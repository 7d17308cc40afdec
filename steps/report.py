"""Step `report` (the onExit template): assemble the run's one final BuildResult.

Usage::

    python -m steps.report --workflow-status Failed --failures '[...]' --decision approve
        [--request JSON] [--validate-error TEXT] [--fallback allowed|forbidden] [--approver WHO]
        [--reason TEXT] [--decided-at ISO] [--mode MODE] [--build-classification JSON]
        [--build-digest DIGEST] [--synthetic-result JSON] [--push-result JSON]
        [--push-classification JSON] [--out DIR]

Every argument is a string the template fills from `{{workflow.status}}`, `{{workflow.failures}}`
or a global output parameter (`{{workflow.outputs.parameters.X}}`); an empty string, or an
Argo expression left unresolved because that step never ran (`{{...}}`), counts as absent.

Reads:
    --workflow-status S       {{workflow.status}}: Succeeded, Failed or Error.
    --failures JSON           {{workflow.failures}}: a list of {displayName, message, templateName,
                              phase, podName, finishedAt} for the failed nodes.
    --request JSON            validate's `request` (canonical BuildRequest): image and push flag.
    --validate-error TEXT     validate's `error` (lines `field: message`); non-empty means the
                              request was invalid: failed, class config_error.
    --fallback V              validate's `fallback`: a synthetic result is accepted only when
                              `allowed` (when absent: allowed unless the request is strict).
    --decision D              the approval gate's decision: approve, reject, or timeout (the gate's
                              default applied; recorded as reject).
    --approver WHO            who resumed the gate (Argo's actor label); empty on timeout.
    --reason TEXT             the approver's reason.
    --decided-at ISO          when the gate resumed (RFC 3339).
    --mode MODE               the builder the probe chose (kaniko, buildkit, runner): the result's builder.
    --build-classification J  classify's `classification` of the failed build.
    --build-digest DIGEST     the build's archive digest (build-runner `digest`), for push=false runs.
    --synthetic-result JSON   synthetic's `result`.
    --push-result JSON        push's `result`.
    --push-classification J   push's `classification`.

Writes into --out (names from steps.contract.STEPS["report"]):
    result   the BuildResult JSON; also printed to stdout. It is the workflow's `result`.

Decision order: invalid request -> failed (config_error); decision not approve -> rejected;
a synthetic result that policy allows -> synthetic; a verified push in a Succeeded workflow ->
succeeded; push=false with a build digest -> succeeded (no_push_requested); anything else ->
failed, carrying the push's or the build's classification, config_error when validate was
the failed node, and unclassified otherwise. A failed result never lacks a classification.
Exit status: 0 for a succeeded or synthetic result, 1 for a failed or rejected one (after
writing it), 2 on a malformed argument (after writing a failed, unclassified result naming
it). The non-zero exit is deliberate: Argo judges a DAG by its leaf tasks, and image-build's
leaf (`synthetic`) is merely Skipped after a rejection, so without it the Workflow could show
Succeeded. An exit handler that fails turns the Workflow Failed (shared/research/argo.md
section 3.5), so `argo submit --wait`, the UI and CI all see what the result says; the
result itself is still exported, as a failed pod's outputs are.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from steps._io import add_common_args, write_outputs
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
    describe_errors,
)
from steps.errors import InputError

__all__ = ["Failure", "ReportInputs", "assemble", "main"]

STEP = "report"
_BUILDER_FOR_MODE = {Mode.KANIKO: Builder.KANIKO, Mode.BUILDKIT: Builder.BUILDKIT, Mode.RUNNER: Builder.BUILDAH}
# The template that validates the request: when it is the failed node, the input was the problem.
_VALIDATE_TEMPLATE = "validate"


class Failure(BaseModel):
    """One entry of Argo's {{workflow.failures}}."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    display_name: str = Field("", alias="displayName")
    message: str = ""
    template_name: str = Field("", alias="templateName")
    phase: str = ""
    pod_name: str = Field("", alias="podName")
    finished_at: str = Field("", alias="finishedAt")


class ReportInputs(BaseModel):
    """Everything report reads, parsed: absent step outputs are None."""

    workflow_status: str
    failures: list[Failure] = Field(default_factory=list)
    request: BuildRequest | None = None
    validate_error: str = ""
    fallback: str = ""
    decision: str = ""
    approver: str = ""
    reason: str = ""
    decided_at: datetime | None = None
    mode: Mode | None = None
    build_classification: Classification | None = None
    build_digest: str = ""
    synthetic_result: BuildResult | None = None
    push_result: BuildResult | None = None
    push_classification: Classification | None = None


def _approval(inputs: ReportInputs) -> Approval | None:
    if not inputs.decision:
        return None
    if inputs.decision == "timeout":
        return Approval(decision=Decision.REJECT, approver=None, reason=inputs.reason or "approval timed out",
                        at=inputs.decided_at)
    return Approval(decision=Decision(inputs.decision), approver=inputs.approver or None, reason=inputs.reason,
                    at=inputs.decided_at)


def _failures_text(failures: list[Failure]) -> str:
    return "; ".join(f"{f.display_name or f.template_name}: {f.message}" for f in failures if f.message)


def _classification(inputs: ReportInputs) -> Classification:
    """Why a run failed: the step's own classification first, then what the failed nodes say."""
    for known in (inputs.push_classification, inputs.build_classification):
        if known is not None and known.class_ is not FailureClass.SUCCEEDED:
            return known
    if inputs.push_result is not None and inputs.push_result.classification is not None:
        return inputs.push_result.classification
    if any(f.template_name == _VALIDATE_TEMPLATE for f in inputs.failures):
        return Classification(class_=FailureClass.CONFIG_ERROR, fallback_allowed=False,
                              message=_failures_text(inputs.failures) or "validate failed")
    text = _failures_text(inputs.failures)
    return Classification(class_=FailureClass.UNCLASSIFIED, fallback_allowed=False,
                          message=text or f"workflow ended {inputs.workflow_status} without a classified failure")


def _fallback_allowed(inputs: ReportInputs) -> bool:
    if inputs.fallback:
        return inputs.fallback == "allowed"
    return inputs.request is None or not inputs.request.strict


def assemble(inputs: ReportInputs) -> BuildResult:
    """The final result of a run, from what its steps left behind."""
    approval = _approval(inputs)
    image = inputs.request.destination if inputs.request else None
    builder = _BUILDER_FOR_MODE.get(inputs.mode) if inputs.mode else None
    if inputs.validate_error.strip():
        lines = inputs.validate_error.strip()
        return BuildResult(status=Status.FAILED, image=image, push_skipped_reason=PushSkippedReason.FAILED,
                           classification=Classification(class_=FailureClass.CONFIG_ERROR, fallback_allowed=False,
                                                          message=lines),
                           message=f"the request is invalid: {lines}")
    if approval is not None and approval.decision is Decision.REJECT:
        return BuildResult(status=Status.REJECTED, image=image, push_skipped_reason=PushSkippedReason.REJECTED,
                           approval=approval, message=f"not approved: {approval.reason}" if approval.reason
                           else "not approved")
    approved = approval is not None and approval.decision is Decision.APPROVE
    succeeded = inputs.workflow_status == "Succeeded"
    synthetic = inputs.synthetic_result
    if approved and synthetic is not None and synthetic.status is Status.SYNTHETIC:
        if _fallback_allowed(inputs):
            return synthetic.model_copy(update={"approval": approval})
        return BuildResult(status=Status.FAILED, builder=builder, image=image,
                           push_skipped_reason=PushSkippedReason.FAILED, classification=synthetic.classification,
                           approval=approval, message="a synthetic result was produced but the request or policy "
                           "forbids the fallback: failing with the build's classification")
    pushed = inputs.push_result
    if approved and succeeded and pushed is not None and pushed.status is Status.SUCCEEDED:
        return pushed.model_copy(update={"approval": approval})
    if approved and succeeded and inputs.request is not None and not inputs.request.push and inputs.build_digest:
        return BuildResult(status=Status.SUCCEEDED, builder=builder, image=image, digest=inputs.build_digest,
                           push_skipped_reason=PushSkippedReason.NO_PUSH_REQUESTED, approval=approval,
                           message="built; push=false, so nothing was pushed")
    classification = _classification(inputs)
    if approval is None and classification.class_ is FailureClass.UNCLASSIFIED and succeeded:
        classification = classification.model_copy(
            update={"message": "the run ended without an approval decision, so nothing was built or pushed"})
    elif succeeded and classification.class_ is FailureClass.UNCLASSIFIED:
        classification = classification.model_copy(
            update={"message": "the workflow succeeded but no step produced a verified result"})
    return BuildResult(status=Status.FAILED, builder=builder, image=image,
                       push_skipped_reason=PushSkippedReason.FAILED, classification=classification,
                       approval=approval, message=classification.message)


def _present(value: str | None) -> str | None:
    """None for an absent output: empty, or an Argo expression left unresolved."""
    if value is None:
        return None
    value = value.strip()
    return None if not value or (value.startswith("{{") and value.endswith("}}")) or value == "null" else value


def _decode_failures(raw: str) -> list[Failure]:
    """Argo's failures list; it may arrive JSON-encoded a second time, as a quoted string."""
    value: Any = raw
    try:
        while isinstance(value, str):
            value = json.loads(value)
        return TypeAdapter(list[Failure]).validate_python(value)
    except (json.JSONDecodeError, ValidationError) as exc:
        detail = describe_errors(exc)[0] if isinstance(exc, ValidationError) else exc.msg
        raise InputError(f"--failures: not Argo's workflow.failures JSON list ({detail})") from None


def _unreadable(problem: str) -> BuildResult:
    """The result when report cannot read its inputs: failed, never silently nothing."""
    return BuildResult(
        status=Status.FAILED,
        classification=Classification(
            class_=FailureClass.UNCLASSIFIED, fallback_allowed=False, message=f"report could not read {problem}"
        ),
        push_skipped_reason=PushSkippedReason.FAILED,
        message=f"report could not read {problem}",
    )


def _parse(args: argparse.Namespace) -> ReportInputs:
    values: dict[str, Any] = {"workflow_status": args.workflow_status}
    raw_failures = _present(args.failures)
    if raw_failures:
        values["failures"] = _decode_failures(raw_failures)
    models = {"request": BuildRequest, "build_classification": Classification, "synthetic_result": BuildResult,
              "push_result": BuildResult, "push_classification": Classification}
    for name, model in models.items():
        raw = _present(getattr(args, name))
        if raw:
            try:
                values[name] = model.model_validate_json(raw)
            except ValidationError as exc:
                raise InputError(f"--{name.replace('_', '-')}: {'; '.join(describe_errors(exc))}") from None
    for name in ("validate_error", "fallback", "decision", "approver", "reason", "build_digest", "mode",
                 "decided_at"):
        raw = _present(getattr(args, name))
        if raw:
            values[name] = raw
    if values.get("decision") not in (None, "approve", "reject", "timeout"):
        raise InputError(f"--decision {values['decision']!r}: use approve, reject or timeout")
    try:
        return ReportInputs.model_validate(values)
    except ValidationError as exc:
        raise InputError("; ".join(describe_errors(exc))) from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m steps.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--workflow-status", required=True, help="{{workflow.status}}")
    p.add_argument("--failures", default="", help="{{workflow.failures}} (JSON list)")
    for flag, text in (
        ("--request", "validate's request JSON"),
        ("--validate-error", "validate's error lines"),
        ("--fallback", "validate's fallback: allowed or forbidden"),
        ("--decision", "approve, reject or timeout"),
        ("--approver", "who resumed the approval gate"),
        ("--reason", "the approver's reason"),
        ("--decided-at", "when the gate resumed (RFC 3339)"),
        ("--mode", "the builder the probe chose"),
        ("--build-classification", "classify's classification JSON"),
        ("--build-digest", "build-runner's archive digest"),
        ("--synthetic-result", "synthetic's result JSON"),
        ("--push-result", "push's result JSON"),
        ("--push-classification", "push's classification JSON"),
    ):
        p.add_argument(flag, default="", help=text)
    add_common_args(p)
    return p


# Results that must turn the Workflow Failed (see the module docstring).
_WORKFLOW_FAILS = frozenset({Status.FAILED, Status.REJECTED})


def main(argv: list[str] | None = None) -> int:
    """Assemble, print and write the final result."""
    args = _parser().parse_args(argv)
    try:
        result, status = assemble(_parse(args)), None
    except InputError as exc:
        # Still write a result: a run must never end without one (nor with a guessed success).
        print(f"report: {exc}", file=sys.stderr)
        result, status = _unreadable(str(exc)), 2
    text = result.to_json()
    write_outputs(STEP, args.out, {"result": text})
    print(text)
    if status is not None:
        return status
    return 1 if result.status in _WORKFLOW_FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
