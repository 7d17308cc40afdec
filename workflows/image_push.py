"""WorkflowTemplate `image-push`: the old `image.push` tool on Argo, an approval-gated copy.

    validate -> approve -> push        onExit: report

It copies an existing image (`source`: `docker://REF`, or `oci-archive:/workspace/...`
from an earlier run) to `destination`, with the same gate, pod defaults and result
contract as `image-build`. The fallback rule carries over: when `source-result` is a
synthetic result, validate's `source-simulated` output stays `true`, push is skipped, and
the report returns that synthetic result (push_skipped_reason builder_runtime_unavailable)
if validate's `fallback` allows it, or a failure with its classification when the
request is strict or the policy forbids synthetic results.
"""

from __future__ import annotations

from hera.workflows import DAG, Parameter, Task, WorkflowTemplate
from hera.workflows import models as m

from steps.contract import PushRequest
from workflows import names
from workflows.common import (
    APPROVED,
    INSECURE,
    VALIDATE_INSECURE,
    approve_template,
    global_ref,
    push_template,
    report_template,
    template_parameters,
    validate_template,
    when,
    workflow_defaults,
)
from workflows.config import RenderConfig

__all__ = ["TEMPLATE", "build"]

# Report flag -> the global output it reads; the request is a PushRequest, which the report does not take.
_REPORT_GLOBALS = {
    "validate-error": "validate_error",
    "fallback": "fallback",
    "decision": names.DECISION,
    "reason": names.REASON,
    "push-result": "push_result",
    "push-classification": "push_classification",
}


def build(config: RenderConfig) -> WorkflowTemplate:
    """The `image-push` WorkflowTemplate for `config`."""
    with WorkflowTemplate(entrypoint="main", on_exit=names.REPORT, **workflow_defaults(
            config, names.IMAGE_PUSH, template_parameters(PushRequest),
            title="Approval-gated image copy",
            description="Validate, approve, then copy an existing image (registry reference or OCI archive) to an "
                        "allowlisted destination; a synthetic source is never pushed.",
            gated=(names.PUSH,))) as wt:
        validate = validate_template(config, PushRequest, {"error": "validate_error", "fallback": "fallback"})
        approve = approve_template()
        push = push_template(config, ["--archive", "{{workflow.parameters.source}}",
                                      "--destination", "{{workflow.parameters.destination}}"])
        # A synthetic source is the run's result when push was skipped for it.
        report_args = ["--synthetic-result", "{{workflow.parameters.source-result}}"]
        for flag, name in _REPORT_GLOBALS.items():
            report_args += [f"--{flag}", global_ref(name)]
        report_template(config, report_args)
        with DAG(name="main", outputs=[Parameter(name="result", global_name="result", value_from=m.ValueFrom(
                expression="tasks.push.outputs.parameters.result ?? ''", default=""))]):
            Task(name=names.VALIDATE, template=validate)
            Task(name=names.APPROVE, template=approve, depends=names.VALIDATE)
            Task(name=names.PUSH, template=push, depends=names.APPROVE, arguments={INSECURE: VALIDATE_INSECURE},
                 when=when(APPROVED, "'{{tasks.validate.outputs.parameters.source-simulated}}' == 'false'"))
    return wt


TEMPLATE = build(RenderConfig())
