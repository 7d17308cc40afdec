"""What `image-build` and `image-push` share: parameters, the validate and approve templates, the report.

- Workflow parameters come only from the request model's `parameter_specs()`
  (steps/contract.py): name, default, enum and description, never typed here.
- `approve` is the suspend gate with intermediate parameters `decision` (enum
  approve/reject, default reject, so a timeout rejects) and `reason`; the same names on
  inputs and outputs, as the Argo UI's resume form requires (shared/research/argo.md
  section 2), each output exported as a global for the report.
- The report reads global outputs through `{{=workflow.outputs?.parameters?.NAME ?? ''}}`:
  a global that was never set (its step did not run) becomes an empty string, which the
  report step reads as absent, instead of an unresolvable tag.
"""

from __future__ import annotations

from typing import Any

from hera.workflows import Container, Parameter, Suspend
from hera.workflows import models as m

from steps.contract import OUTPUT_DIR, POLICY_DIR, WORKSPACE_DIR, BuildRequest, Decision, PushRequest
from workflows import names, rbac
from workflows.config import RenderConfig
from workflows.pods import (
    POLICY,
    REGISTRY_AUTH,
    REGISTRY_AUTH_FILE,
    TMP,
    WORKSPACE,
    PodKind,
    container,
    inp,
    python_step,
    step_outputs,
    workspace_volumes,
)

__all__ = [
    "RequestModel",
    "APPROVED",
    "VALIDATE_INSECURE",
    "approve_template",
    "global_ref",
    "label_ref",
    "param_args",
    "push_template",
    "report_template",
    "template_parameters",
    "validate_template",
    "when",
    "workflow_defaults",
]

DECISION = f"{{{{tasks.{names.APPROVE}.outputs.parameters.{names.DECISION}}}}}"
# Quoted operands: govaluate would otherwise parse the substituted text (argo.md section 1, rule 18).
APPROVED = f"'{DECISION}' == '{Decision.APPROVE.value}'"
RequestModel = type[BuildRequest] | type[PushRequest]
INSECURE = "insecure"
# What push's task passes for INSECURE.
VALIDATE_INSECURE = f"{{{{tasks.{names.VALIDATE}.outputs.parameters.insecure}}}}"
_TITLE = "workflows.argoproj.io/title"
_DESCRIPTION = "workflows.argoproj.io/description"


def when(*clauses: str) -> str:
    """A `when` that holds only if every clause does."""
    return " && ".join(clauses)


def global_ref(name: str) -> str:
    """A global output as a step argument: its value, or '' when it was never set."""
    return f"{{{{=workflow.outputs?.parameters?.{name} ?? ''}}}}"


def label_ref(label: str) -> str:
    """A workflow label as a step argument, '' when absent.

    Through `workflow.labels.json`: a label key's dots would otherwise nest it into maps
    (Argo expands `workflow.labels.a.b/c` the same way it expands every dotted name).
    """
    return f"{{{{=fromJSON(workflow.labels?.json ?? '{{}}')['{label}'] ?? ''}}}}"


def template_parameters(model: RequestModel) -> list[Parameter]:
    """The workflow's `spec.arguments.parameters`, derived from the request model."""
    params = []
    for spec in model.parameter_specs():
        extra: dict[str, Any] = {} if spec.required else {"value": spec.default}
        params.append(Parameter(name=spec.name, description=spec.description, enum=spec.enum, **extra))
    return params


def param_args(model: RequestModel) -> list[str]:
    """`--param NAME={{workflow.parameters.NAME}}` for every request parameter."""
    args = []
    for spec in model.parameter_specs():
        args += ["--param", f"{spec.name}={{{{workflow.parameters.{spec.name}}}}}"]
    return args


def validate_template(config: RenderConfig, model: RequestModel, global_names: dict[str, str]) -> Container:
    """The validate step: request and policy checked before anyone is asked to approve."""
    return container(
        names.VALIDATE, PodKind.STEP, config, image=config.images.steps, command=python_step(names.VALIDATE),
        args=[*param_args(model), "--kind", "build" if model is BuildRequest else "push",
              "--policy-dir", POLICY_DIR, "--namespace", "{{workflow.namespace}}",
              "--service-account", "{{workflow.serviceAccountName}}", "--workspace", WORKSPACE_DIR,
              # Argo's creator label: who submitted, recorded for the four-eyes check.
              "--submitter", label_ref(names.ARGO_CREATOR_LABEL),
              "--out", OUTPUT_DIR],
        mounts=(TMP, WORKSPACE, POLICY), outputs=step_outputs(names.VALIDATE, global_names))


def push_template(config: RenderConfig, args: list[str], inputs: tuple[str, ...] = ()) -> Container:
    """The push step: the only pod with the registry credentials Secret mounted.

    Its task passes `insecure` (validate's output) plus `inputs`.
    """
    return container(
        names.PUSH, PodKind.PUSH, config, image=config.images.runner, inputs=(INSECURE, *inputs),
        # --insecure is a flag: added only when validate found the destination in insecureRegistries.
        command=["/bin/sh", "-c", 'i=$1; shift; [ "$i" = true ] && set -- "$@" --insecure; exec "$@"', names.PUSH,
                 inp(INSECURE), *python_step(names.PUSH)],
        args=[*args, "--attempts", str(config.push_retries + 1), "--out", OUTPUT_DIR],
        # The runner image's HOME and XDG_RUNTIME_DIR belong to its build user; push runs as the steps user.
        env={"REGISTRY_AUTH_FILE": REGISTRY_AUTH_FILE, "HOME": "/tmp", "TMPDIR": "/tmp", "XDG_RUNTIME_DIR": "/tmp"},
        mounts=(TMP, WORKSPACE, REGISTRY_AUTH),
        outputs=step_outputs(names.PUSH, {"result": "push_result", "classification": "push_classification",
                                          "IMAGE_DIGEST": "IMAGE_DIGEST", "IMAGE_URL": "IMAGE_URL"}),
        # The push step retries transient registry failures itself (--attempts); Argo retries a lost pod.
        retry_strategy=m.RetryStrategy(limit="2", retry_policy="OnError",
                                       backoff=m.Backoff(duration="10s", factor="2")),
    )


def report_template(config: RenderConfig, args: list[str]) -> Container:
    """The onExit report: the run's one result, exported as the workflow output `result`."""
    return container(names.REPORT, PodKind.STEP, config, image=config.images.steps, command=python_step(names.REPORT),
                     # Argo's actor label names who resumed the gate last (argo.md section 2); empty after a timeout.
        args=["--workflow-status", "{{workflow.status}}", "--failures", "{{workflow.failures}}",
              "--approver", label_ref(names.ARGO_ACTOR_LABEL), *args,
                           "--out", OUTPUT_DIR],
                     outputs=step_outputs(names.REPORT, {"result": "result"}))


def approve_template() -> Suspend:
    """The approval gate: resumes with approve or reject; its timeout applies reject."""
    fields = {
        names.DECISION: (Decision.REJECT.value, [d.value for d in Decision],
                         "approve to build and push this image; reject (or the timeout) ends the run as rejected"),
        names.REASON: ("", None, "Why: recorded in the result's approval record"),
    }
    return Suspend(
        name=names.APPROVE,
        duration="{{workflow.parameters.approval-timeout}}",
        inputs=[Parameter(name=n, default=d, enum=e, description=t) for n, (d, e, t) in fields.items()],
        outputs=[Parameter(name=n, description=t, global_name=n,
                           value_from=m.ValueFrom(supplied=m.SuppliedValueFrom(), default=d))
                 for n, (d, _, t) in fields.items()],
    )


def workflow_defaults(
    config: RenderConfig, name: str, arguments: list[Parameter], *, title: str, description: str, gated: tuple[str, ...]
) -> dict[str, Any]:
    """WorkflowTemplate fields both templates share: metadata, annotations, pod defaults, TTL, workspace."""
    claims, volumes = workspace_volumes(config)
    return {
        "name": name,
        "namespace": rbac.NAMESPACE,
        "labels": {"app.kubernetes.io/part-of": "imagegate", "app.kubernetes.io/name": name},
        "annotations": {
            _TITLE: title,
            _DESCRIPTION: description,
            names.GATE_ANNOTATION: names.APPROVE,
            names.GATED_ANNOTATION: ",".join(gated),
            names.CREDENTIALS_ANNOTATION: names.PUSH,
        },
        "arguments": arguments,
        "service_account_name": config.service_account,
        # Main containers get no token; the executor gets its own (workflows/rbac.py).
        "automount_service_account_token": False,
        "executor": m.ExecutorConfig(service_account_name=config.service_account),
        "ttl_strategy": m.TTLStrategy(seconds_after_success=config.ttl.seconds_after_success,
                                      seconds_after_failure=config.ttl.seconds_after_failure),
        "pod_gc": m.PodGC(strategy="OnPodSuccess"),
        "volume_claim_templates": claims or None,
        "volume_claim_gc": m.VolumeClaimGC(strategy="OnWorkflowCompletion") if claims else None,
        "volumes": volumes or None,
    }
