"""WorkflowTemplate `image-build`: validate, approve, probe, build, push, with the synthetic fallback.

The DAG (task names from `workflows.names`, routing with `depends` and quoted `when`s,
shared/research/argo.md sections 1 and 3)::

    validate -> approve -> probe (mode=auto only) -> build-{kaniko|buildkit|runner}
    build succeeded -> push (push=true) ......................... -> synthetic (skipped)
    build failed    -> classify ----------------------------------> synthetic (runtime class, fallback allowed)

- Every gated task's `when` starts with the approval check, so nothing builds, pushes or
  fabricates a result unless `approve` resumed with `approve` (a timeout applies its
  default, `reject`).
- Each build runs when the explicit mode, or the probe's `mode` for `auto`, names it.
- `synthetic` is the DAG's one leaf: it depends on `push` as well, so a build failure that
  was handled by the fallback leaves no skipped leaf under a failed branch (Argo's
  assessDAGPhase gives such leaves their branch's phase, which would fail the run).
  Every other failure leaves the DAG Failed or the report marks the result failed.
- The workflow output `result` comes from the DAG's output expression (push's or
  synthetic's result, no extra pod) and is then overwritten by the onExit `report`, which
  computes the result of every path (rejected and failed too) from the global outputs.

`TEMPLATE` is built at import with the default `RenderConfig`; `build(config)` builds
it for any other configuration.
"""

from __future__ import annotations

from collections.abc import Callable

from hera.workflows import DAG, Container, Parameter, Task, WorkflowTemplate
from hera.workflows import models as m

from steps.contract import ARCHIVE_PATH, BUILD_LOG_PATH, OUTPUT_DIR, WORKSPACE_DIR, Builder, BuildRequest, Mode
from workflows import names, wrappers
from workflows.common import (
    APPROVED,
    INSECURE,
    VALIDATE_INSECURE,
    approve_template,
    global_ref,
    param_args,
    push_template,
    report_template,
    template_parameters,
    validate_template,
    when,
    workflow_defaults,
)
from workflows.config import RenderConfig
from workflows.pods import (
    BUILDKIT_RUN,
    BUILDKIT_RUN_DIR,
    BUILDKIT_STATE,
    RUNNER_CACHE,
    RUNNER_CACHE_DIR,
    TMP,
    WORKSPACE,
    PodKind,
    container,
    inp,
    python_step,
    step_outputs,
)

__all__ = ["TEMPLATE", "build"]

_MODE = "{{workflow.parameters.mode}}"
# Inputs of the templates that read other tasks' outputs (their tasks pass them as arguments).
_REQUEST, _BUILDER, _EXIT_CODE = "request", "builder", "exit-code"
_CLASSIFICATION, _FALLBACK = "classification", "fallback"
# The build each mode runs; `auto` follows the probe's `mode` output instead.
_BUILD_FOR_MODE = {
    Mode.KANIKO: names.BUILD_KANIKO,
    Mode.BUILDKIT: names.BUILD_BUILDKIT,
    Mode.RUNNER: names.BUILD_RUNNER,
}
# What the result calls each build's builder (the runner is buildah).
_BUILDERS = {
    names.BUILD_KANIKO: Builder.KANIKO,
    names.BUILD_BUILDKIT: Builder.BUILDKIT,
    names.BUILD_RUNNER: Builder.BUILDAH,
}
# Build outputs the report reads: the digest for push=false runs (every build shares build-runner's outputs).
_BUILD_GLOBALS = {"digest": "build_digest"}
# Report flag -> the global output it reads (each declared as a globalName below).
_REPORT_GLOBALS = {
    "request": "request",
    "validate-error": "validate_error",
    "fallback": "fallback",
    "decision": names.DECISION,
    "reason": names.REASON,
    "build-classification": "build_classification",
    "build-digest": "build_digest",
    "synthetic-result": "synthetic_result",
    "push-result": "push_result",
    "push-classification": "push_classification",
}


def _which_build(status: str, value: Callable[[str], str]) -> str:
    """An expression over the one build in `status` (only one build ever runs): `value(task)` of it."""
    *firsts, last = _BUILD_FOR_MODE.values()
    expr = value(last)
    for task in reversed(firsts):
        expr = f"tasks['{task}'].status == '{status}' ? {value(task)} : {expr}"
    return "{{=" + expr + "}}"


def _builder(task: str) -> str:
    return f"'{_BUILDERS[task].value}'"


def _exit_code(task: str) -> str:
    return f"tasks['{task}'].outputs.parameters['exit-code']"


def _report_args() -> list[str]:
    """What the onExit report reads: Argo's status and failures, and the global outputs."""
    resolved_mode = (f"{{{{=workflow.parameters.mode == '{Mode.AUTO.value}' ? "
                     "(workflow.outputs?.parameters?.mode ?? '') : workflow.parameters.mode}}")
    args = ["--mode", resolved_mode]
    for flag, name in _REPORT_GLOBALS.items():
        args += [f"--{flag}", global_ref(name)]
    return args


def _build_container(task: str, config: RenderConfig) -> Container:
    request = {s.name: f"{{{{workflow.parameters.{s.name}}}}}" for s in BuildRequest.parameter_specs()}
    outputs = step_outputs(names.BUILD_RUNNER, _BUILD_GLOBALS)
    if task == names.BUILD_RUNNER:
        # With a cache claim, buildah's layer store outlives the pod, so an unchanged rebuild reuses every layer.
        cached = config.cache.runner_claim is not None
        return container(task, PodKind.RUNNER, config, image=config.images.runner, command=python_step(task),
                         args=[*param_args(BuildRequest), "--workspace", WORKSPACE_DIR, "--archive", ARCHIVE_PATH,
                               "--log", BUILD_LOG_PATH, *(["--cache-dir", RUNNER_CACHE_DIR] if cached else []),
                               "--out", OUTPUT_DIR],
                         env={"STORAGE_DRIVER": "vfs"}, mounts=(TMP, WORKSPACE, *([RUNNER_CACHE] if cached else [])),
                         outputs=outputs)
    argv = [OUTPUT_DIR, BUILD_LOG_PATH, ARCHIVE_PATH, WORKSPACE_DIR, request["context"], request["dockerfile"],
            request["destination"], request["build-args"], request["labels"]]
    if task == names.BUILD_KANIKO:
        cache = ["--cache=true", f"--cache-repo={config.cache.kaniko_repo}"] if config.cache.kaniko_repo else []
        return container(task, PodKind.KANIKO, config, image=config.images.kaniko,
                         command=["/busybox/sh", "-c", wrappers.KANIKO, "imagegate-build"],
                         args=[*argv, *cache], mounts=(TMP, WORKSPACE), outputs=outputs)
    ref = config.cache.buildkit_ref
    cache = [f"--export-cache=type=registry,ref={ref},mode=max", f"--import-cache=type=registry,ref={ref}"]
    cache = cache if ref else []
    return container(task, PodKind.BUILDKIT, config, image=config.images.buildkit,
                     command=["/bin/sh", "-c", wrappers.BUILDKIT, "imagegate-build"], args=[*argv, *cache],
                     env={"BUILDKITD_FLAGS": "--oci-worker-no-process-sandbox", "XDG_RUNTIME_DIR": BUILDKIT_RUN_DIR},
                     mounts=(TMP, WORKSPACE, BUILDKIT_STATE, BUILDKIT_RUN), outputs=outputs)


def build(config: RenderConfig) -> WorkflowTemplate:
    """The `image-build` WorkflowTemplate for `config`."""
    with WorkflowTemplate(entrypoint="main", on_exit=names.REPORT, **workflow_defaults(
            config, names.IMAGE_BUILD, template_parameters(BuildRequest),
            title="Approval-gated image build",
            description="Validate, approve, then build with Kaniko, BuildKit or buildah and push; a builder the node "
                        "cannot run falls back to a marked synthetic result unless the request is strict.",
            gated=names.GATED_TASKS)) as wt:
        validate = validate_template(config, BuildRequest,
                                     {"request": "request", "error": "validate_error", "fallback": "fallback"})
        approve = approve_template()
        probe = container(names.PROBE, PodKind.RUNNER, config, image=config.images.runner,
                          command=python_step(names.PROBE), args=["--mode", _MODE, "--out", OUTPUT_DIR], probe=True,
                          outputs=step_outputs(names.PROBE, {"mode": "mode"}))
        builds = {task: _build_container(task, config) for task in _BUILD_FOR_MODE.values()}
        classify = container(
            names.CLASSIFY, PodKind.STEP, config, image=config.images.steps, command=python_step(names.CLASSIFY),
            inputs=(_EXIT_CODE, _BUILDER),
            args=["--log", BUILD_LOG_PATH, "--exit-code", inp(_EXIT_CODE), "--builder", inp(_BUILDER),
                  "--out", OUTPUT_DIR],
            mounts=(TMP, WORKSPACE), outputs=step_outputs(names.CLASSIFY, {"classification": "build_classification"}))
        synthetic = container(
            names.SYNTHETIC, PodKind.STEP, config, image=config.images.steps, command=python_step(names.SYNTHETIC),
            inputs=(_REQUEST, _CLASSIFICATION, _FALLBACK),
            # --fallback again, so the step itself refuses what validate forbade, whatever the `when` said.
            args=["--request", inp(_REQUEST), "--classification", inp(_CLASSIFICATION), "--fallback", inp(_FALLBACK),
                  "--workspace", WORKSPACE_DIR, "--out", OUTPUT_DIR],
            mounts=(TMP, WORKSPACE), outputs=step_outputs(names.SYNTHETIC, {"result": "synthetic_result"}))
        push = push_template(config, ["--archive", ARCHIVE_PATH, "--destination", "{{workflow.parameters.destination}}",
                                      "--request", inp(_REQUEST), "--builder", inp(_BUILDER)],
                             inputs=(_REQUEST, _BUILDER))
        report_template(config, _report_args())

        request = f"{{{{tasks.{names.VALIDATE}.outputs.parameters.request}}}}"
        result = ("(tasks.push.outputs.parameters.result ?? '') != '' ? tasks.push.outputs.parameters.result"
                  " : (tasks.synthetic.outputs.parameters.result ?? '')")
        with DAG(name="main", outputs=[Parameter(name="result", global_name="result",
                                                 value_from=m.ValueFrom(expression=result, default=""))]):
            Task(name=names.VALIDATE, template=validate)
            Task(name=names.APPROVE, template=approve, depends=names.VALIDATE)
            Task(name=names.PROBE, template=probe, depends=names.APPROVE,
                 when=when(APPROVED, f"'{_MODE}' == '{Mode.AUTO.value}'"))
            for mode, task in _BUILD_FOR_MODE.items():
                chosen = (f"'{_MODE}' == '{mode.value}' || ('{_MODE}' == '{Mode.AUTO.value}' && "
                          f"'{{{{tasks.probe.outputs.parameters.mode}}}}' == '{mode.value}')")
                Task(name=task, template=builds[task], depends=f"{names.APPROVE} && {names.PROBE}",
                     when=when(APPROVED, f"({chosen})"))
            Task(name=names.PUSH, template=push, depends=" || ".join(f"{t}.Succeeded" for t in builds),
                 when=when(APPROVED, "'{{workflow.parameters.push}}' == 'true'"),
                 arguments={INSECURE: VALIDATE_INSECURE, _REQUEST: request,
                            _BUILDER: _which_build("Succeeded", _builder)})
            Task(name=names.CLASSIFY, template=classify, depends=" || ".join(f"{t}.Failed" for t in builds),
                 when=when(APPROVED),
                 arguments={_EXIT_CODE: _which_build("Failed", _exit_code),
                            _BUILDER: _which_build("Failed", _builder)})
            fallback = ("'{{tasks.classify.outputs.parameters.fallback-allowed}}' == 'true'"
                        f" || '{_MODE}' == '{Mode.SYNTHETIC.value}'")
            Task(name=names.SYNTHETIC, template=synthetic,
                 depends=f"({names.CLASSIFY} || {names.CLASSIFY}.Omitted) && ({names.PUSH} || {names.PUSH}.Omitted)",
                 when=when(APPROVED, "'{{tasks.validate.outputs.parameters.fallback}}' == 'allowed'", f"({fallback})"),
                 arguments={_REQUEST: request,
                            _CLASSIFICATION: f"{{{{tasks.{names.CLASSIFY}.outputs.parameters.classification}}}}",
                            _FALLBACK: f"{{{{tasks.{names.VALIDATE}.outputs.parameters.fallback}}}}"})
    return wt


TEMPLATE = build(RenderConfig())
