"""The scenario matrix: the rendered image-build template, every mode x strict x allowSynthetic x decision x build.

GIVEN manifests/image-build.yaml (what the cluster receives), the plan evaluator drives it with
Argo's depends/when semantics. The steps that need no cluster run for real, in-process, with
exactly the args the template declares after substitution (pod paths mapped into a temp dir):
`validate` (against a policy ConfigMap written from `Policy`, so allowSynthetic reaches the DAG
through validate's real `fallback` output), `synthetic` and the onExit `report`, whose `result`
is the final status asserted. What needs a cluster or a registry is a FAKE, named so here:
the approval (`decision` output, or none for a timeout), the probe's choice, the builds' phase,
classify's outputs for each failure class (its catalogue has its own tests), and push's result.

THEN for every combination: nothing gated runs without approve; synthetic never runs when the
request is strict or the policy forbids it; exactly the chosen builder runs; exactly one of push /
synthetic / failure ends an approved run; the report's status is the one the design promises; and
the workflow's phase agrees with it (Failed for failed and rejected results).
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
from dataclasses import dataclass
from pathlib import Path

import pytest

from steps.contract import (
    ARCHIVE_PATH,
    FALLBACK_CLASSES,
    OUTPUT_DIR,
    POLICY_DIR,
    WORKSPACE_DIR,
    Builder,
    BuildResult,
    Classification,
    FailureClass,
    Mode,
    Policy,
    Status,
)
from workflows import names
from workflows.manifest import load_template
from workflows.plan import Evaluator, LeafCall, LeafOutcome, Phase, Plan

TEMPLATE = Path(__file__).resolve().parent.parent / "manifests" / "image-build.yaml"
DESTINATION = "registry.example.com/team/app:1.0"
BUILD_FOR_MODE = {Mode.KANIKO: names.BUILD_KANIKO, Mode.BUILDKIT: names.BUILD_BUILDKIT, Mode.RUNNER: names.BUILD_RUNNER}
BUILDER_FOR_TASK = {
    names.BUILD_KANIKO: Builder.KANIKO,
    names.BUILD_BUILDKIT: Builder.BUILDKIT,
    names.BUILD_RUNNER: Builder.BUILDAH,
}
FAILURE_CLASSES = [c for c in FailureClass if c not in (FailureClass.SUCCEEDED, FailureClass.REJECTED)]
REAL_STEPS = {names.VALIDATE, names.SYNTHETIC, names.REPORT}


@dataclass(frozen=True)
class Scenario:
    mode: Mode
    strict: bool
    allow_synthetic: bool
    decision: str  # approve | reject | timeout
    build: str  # succeeded | a failure class | none (mode synthetic builds nothing)
    probe: Mode = Mode.RUNNER  # what the probe resolves `auto` to on this (fake) node

    @property
    def id(self) -> str:
        strict, allow = str(self.strict).lower(), str(self.allow_synthetic).lower()
        mode = f"auto>{self.probe.value}" if self.mode is Mode.AUTO else self.mode.value
        return f"{mode}-strict={strict}-allowSynthetic={allow}-{self.decision}-{self.build}"

    @property
    def builder_task(self) -> str:
        """The one build task that should run."""
        return BUILD_FOR_MODE[self.probe if self.mode is Mode.AUTO else self.mode]

    @property
    def fallback_allowed(self) -> bool:
        return not self.strict and self.allow_synthetic

    @property
    def refused_by_validate(self) -> bool:
        """A request for mode synthetic where strict or the policy forbids it is invalid input."""
        return self.mode is Mode.SYNTHETIC and not self.fallback_allowed

    def expected_status(self) -> Status:
        """What the design promises (shared/DESIGN.md, the contract and Modes)."""
        if self.refused_by_validate:
            return Status.FAILED  # bad input ends the run before anyone is asked to approve
        if self.decision != "approve":
            return Status.REJECTED
        if self.mode is Mode.SYNTHETIC:
            return Status.SYNTHETIC
        if self.build == "succeeded":
            return Status.SUCCEEDED
        if FailureClass(self.build) in FALLBACK_CLASSES and self.fallback_allowed:
            return Status.SYNTHETIC
        return Status.FAILED


def scenarios() -> list[Scenario]:
    out = []
    for mode, strict, allow, decision in itertools.product(
        Mode, (False, True), (True, False), ("approve", "reject", "timeout")
    ):
        builds = ["none"] if mode is Mode.SYNTHETIC else ["succeeded", *(c.value for c in FAILURE_CLASSES)]
        probes = list(BUILD_FOR_MODE) if mode is Mode.AUTO else [Mode.RUNNER]
        out.extend(Scenario(mode, strict, allow, decision, b, probe) for b in builds for probe in probes)
    return out


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class Harness:
    """Drives one scenario: real steps in-process, fakes for what needs a cluster."""

    def __init__(self, scenario: Scenario, root: Path) -> None:
        self.s = scenario
        self.root = root
        self.workspace = root / "workspace"
        (self.workspace / "app").mkdir(parents=True)
        (self.workspace / "app" / "Dockerfile").write_text("FROM scratch\nCOPY Dockerfile /\n")
        self.policy = root / "policy"
        self.policy.mkdir()
        policy = Policy(allowed_registries=["registry.example.com"], allow_synthetic=scenario.allow_synthetic)
        for key, value in policy.to_configmap_data().items():
            (self.policy / key).write_text(value)
        self.exit_codes: dict[str, int] = {}

    def _path(self, arg: str, out: Path) -> str:
        for pod_path, here in ((OUTPUT_DIR, out), (POLICY_DIR, self.policy), (WORKSPACE_DIR, self.workspace)):
            if arg == pod_path or arg.startswith(pod_path + "/"):
                return str(here) + arg[len(pod_path) :]
        return arg

    def run_step(self, call: LeafCall) -> LeafOutcome:
        """Run the step the container declares (`python -m steps.X ARGS`), as its pod would."""
        container = call.template["container"]
        command = container["command"]
        module = command[command.index("-m") + 1]
        out = self.root / "nodes" / call.name
        out.mkdir(parents=True)
        argv = [self._path(str(a), out) for a in container.get("args") or []]
        code = importlib.import_module(module).main(argv)
        self.exit_codes[call.name] = code
        values = {}
        for p in (call.template.get("outputs") or {}).get("parameters") or []:
            path = (p.get("valueFrom") or {}).get("path")
            if path and Path(self._path(path, out)).is_file():
                values[p["name"]] = Path(self._path(path, out)).read_text().removesuffix("\n")
        return LeafOutcome(phase=Phase.SUCCEEDED if code == 0 else Phase.FAILED, outputs=values)

    def execute(self, call: LeafCall) -> LeafOutcome:
        if call.task in REAL_STEPS:
            return self.run_step(call)
        if call.task == names.APPROVE:  # FAKE: the person (or the timeout, which sends nothing)
            return LeafOutcome(outputs={} if self.s.decision == "timeout" else {names.DECISION: self.s.decision})
        if call.task == names.PROBE:  # FAKE: the node's capabilities; auto resolves to the buildah runner
            return LeafOutcome(outputs={"mode": self.s.probe.value, "capabilities": "{}"})
        if call.task in BUILDER_FOR_TASK:  # FAKE: a build needs a builder runtime
            if self.s.build == "succeeded":
                return LeafOutcome(outputs={"exit-code": "0", "archive": ARCHIVE_PATH, "digest": _digest(call.task)})
            return LeafOutcome(phase=Phase.FAILED, outputs={"exit-code": "1", "log-tail": f"{self.s.build} (fake log)"})
        if call.task == names.CLASSIFY:  # FAKE: classify's outputs for the scenario's failure class
            cls = FailureClass(self.s.build)
            c = Classification(class_=cls, fallback_allowed=cls in FALLBACK_CLASSES, signature=f"fake-{cls.value}")
            return LeafOutcome(outputs={"class": cls.value, "fallback-allowed": str(c.fallback_allowed).lower(),
                                        "classification": c.to_json()})  # fmt: skip
        if call.task == names.PUSH:  # FAKE: a push needs a registry
            builder = BUILDER_FOR_TASK[self.s.builder_task]
            digest = _digest("pushed")
            result = BuildResult(status=Status.SUCCEEDED, builder=builder, image=DESTINATION, digest=digest)
            return LeafOutcome(outputs={"result": result.to_json(), "digest": digest, "image-url": DESTINATION,
                                        "IMAGE_DIGEST": digest, "IMAGE_URL": DESTINATION})  # fmt: skip
        raise AssertionError(f"the matrix does not know task {call.task}: add it")


@pytest.fixture(scope="module")
def template():
    if not TEMPLATE.is_file():
        pytest.skip("manifests/image-build.yaml is not rendered (imagegate render writes it)")
    return load_template(TEMPLATE)


def run(template, scenario: Scenario, root: Path) -> tuple[Plan, Harness]:
    harness = Harness(scenario, root)
    params = {"context": "app", "destination": DESTINATION, "mode": scenario.mode.value,
              "strict": str(scenario.strict).lower(), "push": "true"}  # fmt: skip
    return Evaluator(template, params).run(harness.execute), harness


@pytest.mark.parametrize("scenario", scenarios(), ids=lambda s: s.id)
def test_scenario(template, scenario: Scenario, tmp_path: Path) -> None:
    result, harness = run(template, scenario, tmp_path)
    ran = set(result.order)
    # validate (real) accepts every request but one that asks for synthetic where it is forbidden.
    assert (harness.exit_codes[names.VALIDATE] != 0) is scenario.refused_by_validate, result.summary()
    if scenario.refused_by_validate:
        assert result.phase_of(names.APPROVE) is Phase.OMITTED  # nobody is asked to approve an invalid request

    if scenario.decision != "approve":
        assert not ran & set(names.GATED_TASKS), (
            f"gated tasks ran without approve: {sorted(ran & set(names.GATED_TASKS))}"
        )
    if not scenario.fallback_allowed:
        assert names.SYNTHETIC not in ran, result.summary()
    builds = ran & set(names.BUILD_TASKS)
    if scenario.decision == "approve" and scenario.mode is not Mode.SYNTHETIC:
        assert builds == {scenario.builder_task}, result.summary()  # exactly the chosen builder
    else:
        assert not builds, result.summary()
    if scenario.decision == "approve" and not scenario.refused_by_validate:
        pushed = result.phase_of(names.PUSH) is Phase.SUCCEEDED
        synthetic = result.phase_of(names.SYNTHETIC) is Phase.SUCCEEDED
        failed = result.result_status == Status.FAILED.value
        assert [pushed, synthetic, failed].count(True) == 1, result.summary()

    assert result.result is not None, result.summary()
    final = BuildResult.model_validate_json(result.result)  # the report's output obeys the contract
    assert final.status is scenario.expected_status(), result.summary()
    # The report fails the workflow for failed and rejected results, so the Argo phase tells them apart too.
    ends_failed = final.status in (Status.FAILED, Status.REJECTED)
    assert result.phase_of(names.REPORT) is (Phase.FAILED if ends_failed else Phase.SUCCEEDED)
    assert result.phase is (Phase.FAILED if ends_failed else Phase.SUCCEEDED), result.summary()
    assert result.node(names.REPORT).exit_handler


def test_matrix_covers_every_mode_and_failure_class() -> None:
    all_scenarios = scenarios()
    assert {s.mode for s in all_scenarios} == set(Mode)
    assert {s.build for s in all_scenarios} >= {"succeeded", *(c.value for c in FAILURE_CLASSES)}
    assert {s.decision for s in all_scenarios} == {"approve", "reject", "timeout"}


def test_approved_build_runs_four_pods_and_the_report(template, tmp_path: Path) -> None:
    result, _ = run(template, Scenario(Mode.RUNNER, False, True, "approve", "succeeded"), tmp_path)
    assert result.order == [names.VALIDATE, names.APPROVE, names.BUILD_RUNNER, names.PUSH, names.REPORT]
    assert (result.pods, result.exit_handler_pods) == (4, 1)  # the approval suspends without a pod


def test_rejection_creates_only_validate_and_report_pods(template, tmp_path: Path) -> None:
    result, _ = run(template, Scenario(Mode.AUTO, False, True, "reject", "succeeded"), tmp_path)
    assert result.order == [names.VALIDATE, names.APPROVE, names.REPORT]
    assert result.pods == 2
