"""imagegate plan: Argo's DAG/steps semantics on the official examples, pods, exit handlers, CLI."""

import json
from pathlib import Path

import pytest

from workflows.cli import main
from workflows.errors import RequestError
from workflows.manifest import load_template
from workflows.plan import Evaluator, LeafCall, LeafOutcome, Phase, plan


def example(shared: Path, name: str):
    return load_template(shared / "argo" / "examples" / f"{name}.yaml")


def test_failed_task_omits_its_dependants_and_fails_the_dag(shared: Path) -> None:
    # dag-continue-on-fail.yaml: D runs on B.Failed, G needs E to succeed.
    result = plan(example(shared, "dag-continue-on-fail"), outcomes={"B": "Failed", "E": "Failed"})
    assert result.phase_of("D") is Phase.SUCCEEDED
    assert result.phase_of("G") is Phase.OMITTED
    # G is a target; Omitted, it inherits the Failed branch of E (dag.go assessDAGPhase).
    assert result.phase is Phase.FAILED
    assert result.order == ["A", "B", "C", "E", "F", "D"]


def test_handled_failure_leaves_the_dag_succeeded(shared: Path) -> None:
    result = plan(example(shared, "dag-continue-on-fail"), outcomes={"B": "Failed"})
    assert result.phase_of("D") is Phase.SUCCEEDED
    assert result.phase is Phase.SUCCEEDED


def test_bare_dependency_runs_after_a_skipped_task(shared: Path) -> None:
    # producer is Skipped (when false); `producer.Succeeded || producer.Skipped` lets consumer run.
    result = plan(example(shared, "skipped-output-defaults/producer-output-default"))
    assert result.phase_of("producer") is Phase.SKIPPED
    assert result.node("consumer").inputs == {"in": "hello-from-producer"}  # the producer's output default


def test_absent_output_of_a_skipped_producer_takes_the_consumer_default(shared: Path) -> None:
    result = plan(example(shared, "skipped-output-defaults/consumer-input-default"))
    assert result.node("consumer").inputs == {"in": "fallback-from-input"}


def test_dag_output_expression_falls_back_with_nil_coalescing(shared: Path) -> None:
    result = plan(example(shared, "skipped-output-defaults/expression-fallback"))
    assert result.node("main").outputs == {"result": "expr-fallback"}


def test_dag_output_expression_picks_the_branch_that_ran(shared: Path) -> None:
    doc = example(shared, "dag-conditional-parameters")
    result = plan(doc, outputs={"flip-coin": {"result": "tails"}, "tails": {"result": "it was tails"}})
    assert result.phase_of("heads") is Phase.SKIPPED
    assert result.node("main").outputs == {"stepresult": "it was tails"}


def test_suspend_timeout_applies_the_input_default_and_creates_no_pod(shared: Path) -> None:
    doc = example(shared, "intermediate-parameters")
    timeout = plan(doc)
    assert timeout.node("approval").outputs == {"approve": "NO"}
    assert timeout.phase_of("deploy-prod") is Phase.SKIPPED
    assert timeout.pods == 1
    approved = plan(doc, outputs={"approval": {"approve": "YES"}})
    assert approved.phase_of("deploy-prod") is Phase.SUCCEEDED
    assert approved.pods == 2
    assert approved.node("approval").pods == 0


def test_exit_handler_sees_workflow_status_and_is_counted(shared: Path) -> None:
    result = plan(example(shared, "exit-handlers"), outcomes={"intentional-fail": "Failed"})
    assert result.phase is Phase.FAILED
    assert result.phase_of("exit-handler.cry") is Phase.SUCCEEDED
    assert result.phase_of("exit-handler.celebrate") is Phase.SKIPPED
    assert (result.pods, result.exit_handler_pods) == (3, 2)
    assert all(n.exit_handler for n in result.nodes if n.name.startswith("exit-handler"))


def test_failed_step_group_stops_later_groups(shared: Path) -> None:
    result = plan(example(shared, "continue-on-fail"), outcomes={"B": "Failed"})
    assert result.phase_of("D") is Phase.OMITTED
    assert "D" not in result.order
    assert result.phase is Phase.FAILED


def test_continue_on_failed_lets_the_steps_go_on(shared: Path) -> None:
    result = plan(example(shared, "continue-on-fail"), outcomes={"C": "Failed"})
    assert result.phase_of("D") is Phase.SUCCEEDED
    assert result.phase is Phase.SUCCEEDED


def test_status_reference_routes_on_the_failed_step(shared: Path) -> None:
    result = plan(example(shared, "status-reference"), outcomes={"flakey-container": "Failed"})
    assert result.phase_of("failed") is Phase.SUCCEEDED
    assert result.phase_of("succeeded") is Phase.SKIPPED


def test_task_exit_hooks_run_after_each_task(shared: Path) -> None:
    result = plan(example(shared, "exit-handler-dag-level"))
    assert result.order == ["A", "A.onExit", "B", "B.onExit", "C", "C.onExit", "D", "D.onExit"]
    assert result.exit_handler_pods == 4


def test_unresolvable_when_is_an_error_that_names_the_missing_output(shared: Path) -> None:
    result = plan(example(shared, "conditional-parameters"))
    heads = result.node("heads")
    assert heads.phase is Phase.ERROR
    assert "steps.flip-coin.outputs.result" in heads.reason
    assert "--output" in heads.reason


def test_evaluator_hands_each_leaf_its_substituted_template(shared: Path) -> None:
    calls: list[LeafCall] = []

    def execute(call: LeafCall) -> LeafOutcome:
        calls.append(call)
        return LeafOutcome()

    Evaluator(example(shared, "buildkit-template"), {"branch": "v3"}).run(execute)
    clone = calls[0]
    assert (clone.name, clone.kind) == ("clone", "container")
    assert clone.inputs["branch"] == "v3"
    assert "v3" in clone.template["container"]["args"]


def test_unknown_task_parameter_or_output_is_a_request_error(shared: Path) -> None:
    doc = example(shared, "intermediate-parameters")
    with pytest.raises(RequestError, match="no task named aproval"):
        plan(doc, outcomes={"aproval": "Failed"})
    with pytest.raises(RequestError, match="unknown parameter"):
        plan(doc, params={"x": "1"})
    with pytest.raises(RequestError, match="has no output"):
        plan(doc, outputs={"approval": {"aprove": "YES"}})
    with pytest.raises(RequestError, match="not an outcome"):
        plan(doc, outcomes={"approval": "Exploded"})
    with pytest.raises(RequestError, match="not an outcome"):
        plan(doc, outcomes={"deploy-prod": "Skipped"})  # Skipped follows from `when`, it is not given


def test_cli_plan_prints_phases_order_and_pods(shared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = shared / "argo" / "examples" / "intermediate-parameters.yaml"
    assert main(["plan", str(path), "--output", "approval.approve=YES", "--outcome", "deploy-prod=Failed"]) == 0
    out = capsys.readouterr().out
    assert "deploy-prod" in out and "Failed" in out
    assert "order: deploy-pre-prod -> approval -> deploy-prod" in out
    assert "pods: 2 (exit handler: 0)" in out


def test_cli_plan_json(shared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = shared / "argo" / "examples" / "exit-handlers.yaml"
    assert main(["plan", str(path), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["phase"] == "Succeeded"
    assert data["exit_handler_pods"] == 2


def test_cli_plan_bad_output_flag_is_a_usage_error(shared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = shared / "argo" / "examples" / "exit-handlers.yaml"
    assert main(["plan", str(path), "--output", "nodot=1"]) == 5
    assert "TASK.PARAM=VALUE" in capsys.readouterr().err


PING_OUT = "{{tasks.ping.outputs.parameters.out}}"
OUT_DEFAULT = "d-{{inputs.parameters.host}}"
ITEMS = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "Workflow",
    "metadata": {"generateName": "items-"},
    "spec": {
        "entrypoint": "main",
        "arguments": {"parameters": [{"name": "hosts", "value": '["a.example.com", "b.example.com"]'}]},
        "templates": [
            {
                "name": "main",
                "dag": {
                    "tasks": [
                        {"name": "ping", "template": "ping", "withParam": "{{workflow.parameters.hosts}}",
                         "arguments": {"parameters": [{"name": "host", "value": "{{item}}"}]}},
                        {"name": "any", "depends": "ping.AnySucceeded", "template": "ping",
                         "arguments": {"parameters": [{"name": "host", "value": PING_OUT}]}},
                        {"name": "all-failed", "depends": "ping.AllFailed", "template": "ping",
                         "arguments": {"parameters": [{"name": "host", "value": "x"}]}},
                        {"name": "seq", "template": "ping", "withSequence": {"count": "3", "start": "1"},
                         "when": "'{{item}}' != '2'",
                         "arguments": {"parameters": [{"name": "host", "value": "h{{item}}"}]}},
                    ]
                },
            },
            {
                "name": "ping",
                "inputs": {"parameters": [{"name": "host"}]},
                "container": {"image": "busybox", "args": ["{{inputs.parameters.host}}"]},
                "outputs": {"parameters": [{"name": "out", "valueFrom": {"path": "/tmp/out", "default": OUT_DEFAULT}}]},
            },
        ],
    },
}  # fmt: skip


def test_items_fan_out_into_children_whose_outputs_aggregate() -> None:
    result = plan(ITEMS)
    assert result.phase_of("ping(0:a.example.com)") is Phase.SUCCEEDED
    assert result.node("ping").kind == "taskGroup"
    assert json.loads(result.node("ping").outputs["out"]) == ["d-a.example.com", "d-b.example.com"]
    assert result.node("any").inputs == {"host": '["d-a.example.com","d-b.example.com"]'}
    assert result.phase_of("all-failed") is Phase.OMITTED
    assert [result.phase_of(f"seq({i}:{i + 1})") for i in range(3)] == [Phase.SUCCEEDED, Phase.SKIPPED, Phase.SUCCEEDED]
    assert result.pods == 5


def test_all_items_failing_takes_the_all_failed_branch() -> None:
    result = plan(ITEMS, outcomes={"ping": "Failed"})
    assert result.node("ping").children == [Phase.FAILED, Phase.FAILED]
    assert result.phase_of("any") is Phase.OMITTED
    assert result.phase_of("all-failed") is Phase.SUCCEEDED


def test_one_item_can_be_given_its_own_outcome() -> None:
    result = plan(ITEMS, outcomes={"ping(1:b.example.com)": "Failed"})
    assert result.node("ping").children == [Phase.SUCCEEDED, Phase.FAILED]
    assert result.phase_of("ping") is Phase.FAILED
    assert result.phase_of("any") is Phase.SUCCEEDED  # AnySucceeded
