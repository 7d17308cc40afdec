"""Pods after approval, counted by `imagegate plan` on the rendered template, against other pipelines.

On Argo every pod on the path costs scheduling, an image pull and executor start-up, so the
number of pods between the approval and the result is the first cost a user waits for.
`imagegate plan --format json` evaluates the rendered
WorkflowTemplate's `depends`/`when` for a scenario and counts the pods it creates; this module
counts those that start after the `approve` node (onExit `report` included). Targets: happy
path <= 3 pods with an explicit mode, <= 4 with `mode=auto`; the failure path to a synthetic
result is printed for information. Baselines are the documented pod counts of two common
pipelines without approval (constants, the same on every machine): Tekton's kaniko Task runs as
1 pod (its steps are containers of one pod: tektoncd/catalog task/kaniko), and Argo's buildkit
example uses 2 for the image (clone, then build and push with buildctl-daemonless.sh:
argo-workflows examples/buildkit-template.yaml; its third pod compiles a Go binary, which is
not part of building an image).
"""

from __future__ import annotations

import subprocess

from pydantic import BaseModel, Field

from bench._measure import IMAGEGATE, ROOT, Figure, Measure, Op, Target, missing
from workflows import names

TEKTON_KANIKO_PODS = 1
ARGO_BUILDKIT_PODS = 2
# The committed, rendered template (imagegate render writes it; a test checks it is not stale).
TEMPLATE = ROOT / "manifests" / f"{names.IMAGE_BUILD}.yaml"
_PARAMS = {"context": "app", "destination": "registry.example.com/team/app:1"}
# The gate resumed with approve (a suspend node creates no pod).
_APPROVED = {names.APPROVE: {names.DECISION: "approve"}}


class Scenario(BaseModel):
    """One plan: parameters, task outcomes and outputs, and the target on pods after approval."""

    name: str
    params: dict[str, str]
    outcomes: dict[str, str] = Field(default_factory=dict)
    outputs: dict[str, dict[str, str]] = Field(default_factory=dict)
    ends_with: str = Field(description="The gated task that must run last: the scenario's path really was taken.")
    target: Target | None
    baseline: int
    baseline_name: str


_EXPLICIT = Target(measure=Measure.VALUE, op=Op.LE, limit=3)
SCENARIOS = [
    *(
        Scenario(name=f"pods after approval: mode={mode}, build succeeds", params=_PARAMS | {"mode": mode},
                 ends_with=names.PUSH, target=_EXPLICIT, baseline=TEKTON_KANIKO_PODS,
                 baseline_name="Tekton kaniko task")
        for mode in ("kaniko", "buildkit", "runner")
    ),
    Scenario(
        name="pods after approval: mode=auto, build succeeds",
        params=_PARAMS | {"mode": "auto"},
        outputs={names.PROBE: {"mode": "runner"}},
        ends_with=names.PUSH,
        target=Target(measure=Measure.VALUE, op=Op.LE, limit=4),
        baseline=ARGO_BUILDKIT_PODS, baseline_name="Argo buildkit example",
    ),
    Scenario(
        name="pods after approval: mode=auto, runtime refused -> synthetic",
        params=_PARAMS | {"mode": "auto"},
        outcomes={names.BUILD_RUNNER: "Failed"},
        outputs={
            names.VALIDATE: {"fallback": "allowed"},
            names.PROBE: {"mode": "runner"},
            names.CLASSIFY: {"class": "builder_runtime_unavailable", "fallback-allowed": "true"},
        },
        ends_with=names.SYNTHETIC,
        target=None,
        baseline=ARGO_BUILDKIT_PODS, baseline_name="Argo buildkit example",
    ),
]


def plan_command(s: Scenario) -> list[str]:
    """`imagegate plan TEMPLATE -p ... --outcome ... --output ... --format json` for a scenario."""
    args = [*IMAGEGATE, "plan", str(TEMPLATE), "--format", "json"]
    args += [a for name, value in s.params.items() for a in ("-p", f"{name}={value}")]
    args += [a for task, phase in s.outcomes.items() for a in ("--outcome", f"{task}={phase}")]
    outputs = _APPROVED | s.outputs
    args += [a for task, values in outputs.items() for k, v in values.items() for a in ("--output", f"{task}.{k}={v}")]
    return args


def run_plan(s: Scenario):
    """What `imagegate plan` printed for the scenario, as the library's Plan model."""
    from workflows.plan import Plan

    done = subprocess.run(plan_command(s), cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"imagegate plan exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return Plan.model_validate_json(done.stdout)


def pods_after_approval(planned) -> tuple[int, list[str]]:
    """Pods created after the approve node started (onExit included), and their nodes in order."""
    by_name = {n.name: n for n in planned.nodes}
    if names.APPROVE not in planned.order:
        raise ValueError(f"the plan never reached {names.APPROVE}: {' -> '.join(planned.order)}")
    after = planned.order[planned.order.index(names.APPROVE) + 1 :]
    pods = [name for name in after if by_name[name].pods]
    return sum(by_name[name].pods for name in pods), pods


def figures() -> list[Figure]:
    """One figure per scenario, from `imagegate plan` on the rendered template."""
    if not TEMPLATE.is_file():
        error = f"{TEMPLATE.relative_to(ROOT)} has not been rendered yet (imagegate render)"
        return [missing(s.name, "pods", s.target, error) if s.target else Figure(name=s.name, unit="pods", error=error)
                for s in SCENARIOS]
    result = []
    for s in SCENARIOS:
        count, pods = pods_after_approval(run_plan(s))
        gated = [task for task in pods if task in names.GATED_TASKS]
        if not gated or gated[-1] != s.ends_with:
            result.append(Figure(name=s.name, unit="pods", target=s.target,
                                 error=f"the plan took {' -> '.join(pods)}, not a path ending in {s.ends_with}"))
            continue
        result.append(Figure(name=s.name, unit="pods", value=count, baseline=s.baseline, baseline_name=s.baseline_name,
                             target=s.target, note=" -> ".join(pods)))
    return result
