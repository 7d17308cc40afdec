"""Argo's expression languages as the controller evaluates them: govaluate `when`, `depends`, expr."""

import pytest

from workflows.errors import ExpressionEvaluationError, ExpressionSyntaxError, UnresolvedReferenceError
from workflows.expressions import (
    depends_tasks,
    eval_expr,
    evaluate_depends,
    evaluate_when,
    expand_depends,
    nest_scope,
    substitute,
)

# --- when (govaluate, bare words become strings: workflow/controller/steps.go shouldExecute) ---


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("approve == approve", True),
        ("'approve' == 'reject'", False),
        ("'approve' != 'reject'", True),
        ("heads =~ hea", True),
        ("tails !~ hea", True),
        ("true", True),
        ("false", False),
        ("1 == 1.0", True),
        ("5 > 3", True),
        ("'10' == 10", False),
        ("(a == a && b == c) || x != y", True),
        ("!(a == a)", False),
        ("Succeeded == Succeeded && Failed != Succeeded", True),
        ("'auto' in ('auto', 'runner')", True),
        ("", True),
    ],
    ids=lambda v: repr(v) if isinstance(v, str) else None,
)
def test_when_evaluates_like_govaluate(when: str, expected: bool) -> None:
    assert evaluate_when(when) is expected


@pytest.mark.parametrize(
    ("when", "fragment"),
    [
        ("hello world == hello world", "Cannot transition token types from VARIABLE [hello] to VARIABLE [world]"),
        ("a == ", "Unexpected end of expression"),
        ("(a == a", "Unbalanced parenthesis"),
        ("'unclosed == x", "Unclosed string literal"),
        ('{"a":1} == x', "Invalid token: '{'"),
        ("1.2.3 == x", "Unable to parse numeric value '1.2.3' to float64"),
        ("registry.example.com == x", "Unable to access unexported field 'example'"),
        ("a = b", "Invalid token: '='"),
    ],
)
def test_values_that_break_govaluate_are_syntax_errors(when: str, fragment: str) -> None:
    with pytest.raises(ExpressionSyntaxError) as err:
        evaluate_when(when)
    assert fragment in str(err.value)
    assert str(err.value).startswith(f"Invalid 'when' expression '{when}'")


def test_invalid_token_carries_argos_quoting_hint() -> None:
    with pytest.raises(ExpressionSyntaxError) as err:
        evaluate_when('{"mode":"auto"} == x')
    assert err.value.hint == 'try wrapping the affected expression in quotes (")'


def test_quoting_the_substituted_value_makes_it_one_string() -> None:
    scope = {"workflow.parameters.destination": "registry.example.com/app:1"}
    unquoted = substitute("{{workflow.parameters.destination}} != ''", scope)
    with pytest.raises(ExpressionSyntaxError):
        evaluate_when(unquoted)
    assert evaluate_when(substitute("'{{workflow.parameters.destination}}' != ''", scope)) is True


def test_json_breaks_a_when_even_quoted_because_either_quote_ends_a_string() -> None:
    # govaluate parsing.go isNotQuote: a string literal ends at ' or ", so JSON cannot be compared in a when.
    when = substitute(
        "'{{tasks.validate.outputs.parameters.request}}' != ''",
        {"tasks.validate.outputs.parameters.request": '{"mode": "auto"}'},
    )
    with pytest.raises(ExpressionSyntaxError, match="Cannot transition token types"):
        evaluate_when(when)


@pytest.mark.parametrize(
    ("when", "fragment"),
    [
        ("build-runner == x", "cannot be used with the operator '-'"),  # a dash between bare words is minus
        ("x", "Expected boolean evaluation for 'x'. Got x"),
        ("'a' && true", "cannot be used with the operator '&&'"),
        ("'a' > 1", "cannot be used with the comparator '>'"),
    ],
)
def test_type_errors_and_non_booleans_fail_at_evaluation(when: str, fragment: str) -> None:
    with pytest.raises(ExpressionEvaluationError) as err:
        evaluate_when(when)
    assert fragment in str(err.value)


def test_false_left_side_of_and_short_circuits() -> None:
    assert evaluate_when("false && 'x'") is False


# --- depends (workflow/common/ancestry.go, workflow/controller/dag.go evaluateDependsLogic) ---


def test_bare_name_expands_to_succeeded_skipped_daemoned() -> None:
    assert expand_depends("A && B.Failed") == "(A.Succeeded || A.Skipped || A.Daemoned) && B.Failed"


def test_continue_on_adds_errored_and_failed_to_the_expansion() -> None:
    expanded = expand_depends("A", {"A": {"failed": True, "error": True}})
    assert expanded == "(A.Succeeded || A.Skipped || A.Daemoned || A.Errored || A.Failed)"


@pytest.mark.parametrize(
    ("phase", "expected"),
    [("Succeeded", True), ("Skipped", True), ("Failed", False), ("Error", False), ("Omitted", False)],
)
def test_bare_dependency_runs_after_success_or_skip_only(phase: str, expected: bool) -> None:
    assert evaluate_depends("approve", {"approve": phase}) is expected


def test_bare_dependency_with_continue_on_failed_also_runs_after_failure() -> None:
    assert evaluate_depends("build", {"build": "Failed"}, {"build": {"failed": True}}) is True
    assert evaluate_depends("build", {"build": "Error"}, {"build": {"failed": True}}) is False


@pytest.mark.parametrize(
    ("depends", "phases", "expected"),
    [
        ("B.Failed && C", {"B": "Failed", "C": "Succeeded"}, True),
        ("B.Failed && C", {"B": "Succeeded", "C": "Succeeded"}, False),
        ("build-runner.Failed || build-kaniko.Failed", {"build-runner": "Omitted", "build-kaniko": "Failed"}, True),
        ("A.Errored", {"A": "Error"}, True),
        ("!A.Succeeded", {"A": "Skipped"}, True),
        ("(classify || classify.Omitted) && push.Omitted", {"classify": "Omitted", "push": "Omitted"}, True),
    ],
)
def test_depends_results(depends: str, phases: dict[str, str], expected: bool) -> None:
    assert evaluate_depends(depends, phases) is expected


def test_depends_names_its_tasks() -> None:
    assert depends_tasks("a.Succeeded || (b && !c.Failed)") == {"a": ["Succeeded"], "b": [], "c": ["Failed"]}


def test_unknown_task_result_is_a_syntax_error() -> None:
    with pytest.raises(ExpressionSyntaxError, match="task result 'Succeded' for task 'a' is invalid"):
        depends_tasks("a.Succeded")


def test_depends_on_a_task_that_is_not_there_fails() -> None:
    with pytest.raises(ExpressionEvaluationError, match="dependency 'b' not defined"):
        evaluate_depends("a && b", {"a": "Succeeded"})


def test_unbalanced_depends_does_not_parse() -> None:
    with pytest.raises(ExpressionSyntaxError):
        evaluate_depends("(a || b", {"a": "Succeeded", "b": "Succeeded"})


# --- expr ({{=...}} and valueFrom.expression) ---


def test_bracket_and_dot_access_reach_the_same_nested_scope() -> None:
    env = nest_scope({"tasks.flip-coin.outputs.result": "tails", "tasks.tails.outputs.result": "T"})
    text = "tasks['flip-coin'].outputs.result == 'heads' ? tasks.heads.outputs.result : tasks.tails.outputs.result"
    assert eval_expr(text, env) == "T"


def test_absent_output_falls_back_with_nil_coalescing() -> None:
    assert eval_expr("tasks.producer.outputs.parameters.msg ?? 'expr-fallback'", {}) == "expr-fallback"
    assert eval_expr("workflow.outputs?.parameters?.mode ?? ''", {}) == ""


def test_member_of_nil_is_an_error_without_optional_chaining() -> None:
    with pytest.raises(ExpressionEvaluationError, match="cannot fetch"):
        eval_expr("tasks.producer.outputs.result == 'x'", {})


def test_jsonpath_and_conversions() -> None:
    env = nest_scope({"workflow.parameters.json": '[{"value": "true"}]', "inputs.parameters.n": "3"})
    assert eval_expr("jsonpath(workflow.parameters.json, '$[0].value') == 'true'", env) is True
    assert eval_expr("asInt(inputs.parameters.n) + 1", env) == 4


def test_unsupported_function_is_named() -> None:
    with pytest.raises(ExpressionSyntaxError, match=r"function sprig\(\) is not supported"):
        eval_expr("sprig('x')", {})


def test_expr_and_or_need_booleans() -> None:
    with pytest.raises(ExpressionEvaluationError, match="invalid operation"):
        eval_expr("'a' && true", {})
    assert eval_expr("not false and (1 < 2 or false)", {}) is True


# --- {{...}} substitution ---


def test_substitute_fills_tags_and_evaluates_expression_tags() -> None:
    scope = {"inputs.parameters.should-print": "true", "workflow.name": "wf"}
    assert substitute("{{workflow.name}}: {{= inputs.parameters['should-print'] == 'true'}}", scope) == "wf: true"


def test_unresolved_tag_raises_unless_allowed() -> None:
    with pytest.raises(UnresolvedReferenceError, match=r"failed to resolve \{\{inputs.parameters.x\}\}"):
        substitute("{{inputs.parameters.x}}", {})
    assert substitute("{{pod.name}}", {}, allow_unresolved=True) == "{{pod.name}}"


def test_any_succeeded_and_all_failed_read_the_item_phases() -> None:
    groups = {"ping": ["Failed", "Succeeded"]}
    assert evaluate_depends("ping.AnySucceeded", {"ping": "Failed"}, groups=groups) is True
    assert evaluate_depends("ping.AllFailed", {"ping": "Failed"}, groups=groups) is False
    assert evaluate_depends("ping.AllFailed", {"ping": "Failed"}, groups={"ping": ["Failed", "Failed"]}) is True
    assert evaluate_depends("ping.AnySucceeded", {"ping": "Succeeded"}) is False  # not an item group
