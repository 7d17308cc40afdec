"""Pods after approval, counted by `imagegate plan` on the rendered template, against other pipelines.

On Argo every pod on the path costs scheduling, an image pull and executor start-up, so the
number of pods between the approval and the result is the first cost a user waits for.
`imagegate plan` (its library function `workflows.plan.plan`) evaluates the rendered
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

from pydantic import BaseModel, Field

from bench._measure import ROOT, Figure, Measure, Op, Target, missing
from workflows import names

TEKTON_KANIKO_PODS = 1
ARGO_BUILDKIT_PODS = 2
MANIFESTS = ROOT / "manifests"
_PARAMS = {"context": "app", "destination": "registry.example.com/team/app:1"}
# The gate resumed with approve (a suspend node creates no pod).
_APPROVED = {names.APPROVE: {names.DECISION: "approve"}}


class Scenario(BaseModel):
    """One plan: parameters, task outcomes and outputs, and the target on pods after approval."""

    name: str
    params: dict[str, str]
    outcomes: dict[str, str] = Field(default_factory=dict)
    outputs: dict[str, dict[str, str]] = Field(default_factory=dict)
    target: Target | None
    baseline: int
    baseline_name: str


_EXPLICIT = Target(measure=Measure.VALUE, op=Op.LE, limit=3)
SCENARIOS = [
    *(
        Scenario(name=f"pods after approval: mode={mode}, build succeeds", params=_PARAMS | {"mode": mode},
                 target=_EXPLICIT, baseline=TEKTON_KANIKO_PODS, baseline_name="Tekton kaniko task")
        for mode in ("kaniko", "buildkit", "runner")
    ),
    Scenario(
        name="pods after approval: mode=auto, build succeeds",
        params=_PARAMS | {"mode": "auto"},
        outputs={names.PROBE: {"mode": "runner"}},
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
        target=None,
        baseline=ARGO_BUILDKIT_PODS, baseline_name="Argo buildkit example",
    ),
]


def rendered_template():
    """The committed, rendered image-build WorkflowTemplate (what `imagegate render` wrote)."""
    from workflows.errors import TemplateError
    from workflows.manifest import load_paths

    found = [m for m in load_paths([MANIFESTS]) if m.name == names.IMAGE_BUILD and m.kind == "WorkflowTemplate"]
    if len(found) != 1:
        raise TemplateError(f"{MANIFESTS}: expected one WorkflowTemplate {names.IMAGE_BUILD}, found {len(found)}",
                            hint="run imagegate render")
    return found[0]


def pods_after_approval(planned) -> tuple[int, list[str]]:
    """Pods created after the approve node started (onExit included), and their nodes in order."""
    by_name = {n.name: n for n in planned.nodes}
    if names.APPROVE not in planned.order:
        raise ValueError(f"the plan never reached {names.APPROVE}: {' -> '.join(planned.order)}")
    after = planned.order[planned.order.index(names.APPROVE) + 1 :]
    pods = [name for name in after if by_name[name].pods]
    return sum(by_name[name].pods for name in pods), pods


def figures() -> list[Figure]:
    """One figure per scenario, from `workflows.plan.plan` on the rendered template."""
    if not (ROOT / "workflows" / "plan.py").is_file():
        error = "workflows/plan.py does not exist yet"
        return [missing(s.name, "pods", s.target, error) if s.target else Figure(name=s.name, unit="pods", error=error)
                for s in SCENARIOS]
    from workflows.plan import plan

    template = rendered_template()
    result = []
    for s in SCENARIOS:
        planned = plan(template, s.params, s.outcomes, _APPROVED | s.outputs)
        count, pods = pods_after_approval(planned)
        note = " -> ".join(pods)
        result.append(Figure(name=s.name, unit="pods", value=count, baseline=s.baseline, baseline_name=s.baseline_name,
                             target=s.target, note=note))
    return result
