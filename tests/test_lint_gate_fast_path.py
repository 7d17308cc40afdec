"""approval-not-dominating: the fast proof and the full exploration reach the same verdict.

The rule first proves gated tasks blocked without running the plan evaluator (each `when`
under every refusal of the gate with the other operands unknown, then `depends` on blocked
tasks) and explores runs only for the tasks it cannot prove. These tests break the rendered
image-build gate in memory in several ways and check that lint reports exactly the broken
task, and the same findings as the exploration alone; the clean manifests need no exploration.
"""

import copy
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from workflows import lint
from workflows.expressions import when_outcomes
from workflows.manifest import Manifest, load_paths

MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"
DECISION = "'{{tasks.approve.outputs.parameters.decision}}' == 'approve'"
MODE = "'{{workflow.parameters.mode}}'"
UNKNOWN = "someunknownvalue"

Mutation = Callable[[dict], None]


def _image_build() -> Manifest:
    path = MANIFESTS / "image-build.yaml"
    if not path.is_file():
        pytest.skip("manifests/image-build.yaml is not rendered yet (imagegate render writes it)")
    (manifest,) = load_paths([path])
    return manifest


def _task(data: dict, name: str) -> dict:
    entry = next(t for t in data["spec"]["templates"] if t["name"] == data["spec"]["entrypoint"])
    return next(t for t in entry["dag"]["tasks"] if t["name"] == name)


def _mutated(mutate: Mutation) -> Manifest:
    clean = _image_build()
    data = copy.deepcopy(clean.data)
    mutate(data)
    return Manifest(path=clean.path, index=clean.index, data=data, lines=clean.lines)


def _gate_findings(manifest: Manifest) -> list[str]:
    report = lint.lint_manifests([manifest])
    return [f.message for f in report.findings if f.rule == "approval-not-dominating"]


def _reported_tasks(messages: list[str]) -> set[str]:
    return {m.group(1) for text in messages if (m := re.match(r"gated task (\S+) can run", text))}


def _drop_decision(task: str) -> Mutation:
    def mutate(data: dict) -> None:
        when = _task(data, task)["when"]
        assert DECISION + " && " in when
        _task(data, task)["when"] = when.replace(DECISION + " && ", "", 1)

    return mutate


def _depend_only_on_validate(task: str, *, drop_decision: bool) -> Mutation:
    def mutate(data: dict) -> None:
        _task(data, task)["depends"] = "validate"
        if drop_decision:
            _drop_decision(task)(data)

    return mutate


def _or_with_mode(task: str, mode: str) -> Mutation:
    def mutate(data: dict) -> None:
        _task(data, task)["when"] = f"{DECISION} || {MODE} == '{mode}'"

    return mutate


# (mutation, the gated tasks lint must report)
MUTATIONS = {
    "build-runner-when-without-the-decision": (_drop_decision("build-runner"), {"build-runner"}),
    "build-kaniko-when-without-the-decision": (_drop_decision("build-kaniko"), {"build-kaniko"}),
    "probe-depends-only-on-validate-without-the-decision": (
        _depend_only_on_validate("probe", drop_decision=True),
        {"probe"},
    ),
    "build-runner-decision-or-mode-runner": (_or_with_mode("build-runner", "runner"), {"build-runner"}),
    "synthetic-when-without-the-decision": (_drop_decision("synthetic"), {"synthetic"}),
    # Still gated: push needs a build to have Succeeded, and every build checks the decision.
    "push-when-without-the-decision-still-needs-a-build": (_drop_decision("push"), set()),
    # Still gated: probe's own when reads the decision, absent or refused without approval.
    "probe-depends-only-on-validate-keeping-the-decision": (
        _depend_only_on_validate("probe", drop_decision=False),
        set(),
    ),
}


@pytest.mark.parametrize(("mutate", "expected"), list(MUTATIONS.values()), ids=list(MUTATIONS))
def test_lint_reports_exactly_the_task_the_mutation_ungates(mutate: Mutation, expected: set[str]) -> None:
    assert _reported_tasks(_gate_findings(_mutated(mutate))) == expected


@pytest.mark.parametrize(("mutate", "expected"), list(MUTATIONS.values()), ids=list(MUTATIONS))
def test_fast_path_and_full_exploration_report_the_same(
    mutate: Mutation, expected: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = _mutated(mutate)
    with_fast_path = _gate_findings(manifest)
    monkeypatch.setattr(lint, "_blocked_without_approval", lambda *args: set())  # prove nothing: explore all
    assert _gate_findings(manifest) == with_fast_path
    assert _reported_tasks(with_fast_path) == expected


def _no_exploration(*args: object, **kwargs: object) -> None:
    raise AssertionError("the fast path should have proven every gated task blocked")


@pytest.mark.parametrize("name", ["image-build", "image-push"])
def test_clean_manifests_are_proven_without_exploring(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = MANIFESTS / f"{name}.yaml"
    if not path.is_file():
        pytest.skip(f"manifests/{name}.yaml is not rendered yet (imagegate render writes it)")
    monkeypatch.setattr(lint, "_explore", _no_exploration)
    report = lint.lint([path])
    assert report.errors == 0, report.summary()


def test_clean_manifests_and_official_examples_lint_without_errors(shared: Path) -> None:
    report = lint.lint([*sorted(MANIFESTS.glob("*.yaml")), shared / "argo" / "examples"])
    assert report.errors == 0, report.summary()


def _explored(monkeypatch: pytest.MonkeyPatch, mutate: Mutation, *, run: bool = True) -> list[list[str]]:
    """The gated tasks lint hands to the full exploration (once per parameter combination, if `run`)."""
    explored: list[list[str]] = []
    real_explore = lint._explore

    def spy(doc, params, gate, gated, decision, options, found, runs):  # lint._explore's signature
        explored.append(list(gated))
        if not run:
            return runs
        return (yield from real_explore(doc, params, gate, gated, decision, options, found, runs))

    monkeypatch.setattr(lint, "_explore", spy)
    _gate_findings(_mutated(mutate))
    return explored


def test_an_unquoted_free_text_operand_is_left_to_the_exploration(monkeypatch: pytest.MonkeyPatch) -> None:
    # A bare `{{...}}` value with spaces or operators could change how the `when` parses, so the
    # fast path does not claim the task blocked: the exploration decides it.
    def mutate(data: dict) -> None:
        _task(data, "build-runner")["when"] = f"{DECISION} && {{{{workflow.parameters.context}}}} != x"

    explored = _explored(monkeypatch, mutate)
    assert explored and all(gated == ["build-runner"] for gated in explored)


def test_a_gate_whose_default_approves_is_not_proven_by_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # A timeout (or a gate that never ran) leaves the default: `approve` there is no refusal.
    def mutate(data: dict) -> None:
        gate = next(t for t in data["spec"]["templates"] if t["name"] == "approve")
        gate["inputs"]["parameters"][0]["default"] = "approve"
        gate["outputs"]["parameters"][0]["valueFrom"]["default"] = "approve"

    explored = _explored(monkeypatch, mutate, run=False)
    assert explored, "every gated task was taken as blocked although the default approves"


def test_a_fanned_out_gate_is_left_to_the_exploration(monkeypatch: pytest.MonkeyPatch) -> None:
    # Its decision output is a JSON list of the items' decisions, not one of the refusals.
    def mutate(data: dict) -> None:
        _task(data, "approve")["withItems"] = ["first", "second"]

    assert _explored(monkeypatch, mutate, run=False), "a fanned-out gate's tasks were taken as blocked"


@pytest.mark.parametrize(
    ("when", "outcomes"),
    [
        pytest.param(f"'reject' == 'approve' && '{UNKNOWN}' == 'auto'", {False}, id="false-and-unknown-is-false"),
        pytest.param(f"'{UNKNOWN}' == 'auto' && 'reject' == 'approve'", {False}, id="unknown-and-false-is-false"),
        pytest.param(f"'reject' == 'approve' || '{UNKNOWN}' == 'runner'", {True, False}, id="false-or-unknown"),
        pytest.param(f"'approve' == 'approve' || '{UNKNOWN}' == 'x'", {True}, id="true-or-unknown-is-true"),
        pytest.param(f"!('{UNKNOWN}' == 'x') && 'a' != 'a'", {False}, id="negated-unknown-and-false"),
        pytest.param("!('reject' == 'approve')", {True}, id="negated-known"),
        pytest.param(f"{UNKNOWN} == Succeeded", {True, False}, id="bare-unknown-word"),
        pytest.param(f"'{UNKNOWN}' && false", {False, None}, id="string-and-false-fails-or-is-false"),
        pytest.param(f"'{UNKNOWN}' > 3", {True, False, None}, id="ordering-unknown-may-fail"),
        pytest.param("'reject' == 'approve' && (", {None}, id="syntax-error-fails"),
        pytest.param("", {True}, id="empty-when-runs"),
    ],
)
def test_when_outcomes_follow_govaluate_short_circuits(when: str, outcomes: set) -> None:
    assert when_outcomes(when, UNKNOWN) == outcomes
