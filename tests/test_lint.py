"""imagegate lint: each rule caught by a minimal failing template; Argo's examples and ours are clean."""

import json
import re
import textwrap
from pathlib import Path

import pytest

from workflows.cli import main
from workflows.lint import RULES, Severity, lint
from workflows.manifest import load_paths

CASES = Path(__file__).parent / "lint_cases"
MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"
CASE_FILES = sorted(CASES.glob("*.yaml"))


def _examples(shared: Path) -> list[Path]:
    return sorted((shared / "argo" / "examples").rglob("*.yaml"))


def test_every_rule_has_a_failing_case() -> None:
    assert {f.stem for f in CASE_FILES} == set(RULES)


@pytest.mark.parametrize("case", CASE_FILES, ids=lambda p: p.stem)
def test_rule_catches_its_minimal_failing_template(case: Path) -> None:
    report = lint([case])
    caught = [f for f in report.findings if f.rule == case.stem]
    assert caught, report.summary()
    assert all(f.severity is RULES[case.stem].severity for f in caught) or case.stem == "param-in-script-source"
    # A case shows its own rule only, so each rule is proven by its own test.
    assert {f.rule for f in report.findings} == {case.stem}, report.summary()
    # Findings point at the offending line, not at the top of the document.
    assert all(f.line > 5 or f.rule == "invalid-name" for f in caught), report.summary()


def test_finding_line_is_the_offending_key() -> None:
    case = CASES / "template-not-found.yaml"
    (finding,) = lint([case]).findings
    assert case.read_text().splitlines()[finding.line - 1].strip() == "template: helo"


def test_official_examples_have_no_errors(shared: Path) -> None:
    examples = _examples(shared)
    assert len(examples) >= 19
    report = lint(examples)
    assert report.errors == 0, report.summary()


@pytest.mark.parametrize(
    "name", ["buildkit-template", "dag-continue-on-fail", "exit-handlers", "intermediate-parameters"]
)
def test_each_official_example_loads_as_one_argo_object(shared: Path, name: str) -> None:
    assert len(load_paths([shared / "argo" / "examples" / f"{name}.yaml"])) == 1


def test_rendered_manifests_have_no_errors() -> None:
    if not (MANIFESTS / "image-build.yaml").is_file():
        pytest.skip("manifests/image-build.yaml is not rendered yet (imagegate render writes it)")
    report = lint([MANIFESTS])
    assert report.objects >= 1
    assert report.errors == 0, report.summary()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(textwrap.dedent(text))
    return path


GATED = """\
    apiVersion: argoproj.io/v1alpha1
    kind: WorkflowTemplate
    metadata:
      name: gated
      annotations:
        imagegate.dev/approval-gate: approve
        imagegate.dev/gated-tasks: build,push
        imagegate.dev/credentials-templates: push
    spec:
      entrypoint: main
      arguments:
        parameters:
          - {name: mode, value: auto, enum: [auto, runner]}
      templates:
        - name: main
          dag:
            tasks:
              - name: approve
                template: approve
              - name: build
                depends: approve
                template: step
                when: >-
                  '{{tasks.approve.outputs.parameters.decision}}' == 'approve' &&
                  '{{workflow.parameters.mode}}' != 'x'
              - name: push
                depends: build.Succeeded
                template: push
                when: "'{{tasks.approve.outputs.parameters.decision}}' == 'approve'"
        - name: approve
          suspend: {duration: "24h"}
          inputs:
            parameters:
              - {name: decision, default: reject, enum: [approve, reject]}
          outputs:
            parameters:
              - {name: decision, valueFrom: {supplied: {}}}
        - name: step
          container: {image: busybox}
        - name: push
          volumes:
            - {name: auth, secret: {secretName: registry}}
          container:
            image: busybox
            volumeMounts: [{name: auth, mountPath: /auth}]
    """


def test_gate_checked_in_every_gated_when_passes(tmp_path: Path) -> None:
    report = lint([_write(tmp_path, GATED)])
    assert report.findings == [], report.summary()


def test_gated_task_whose_dependency_was_skipped_still_runs(tmp_path: Path) -> None:
    # `push` depends on build with a bare name: a Skipped build (rejected) still lets it start.
    text = GATED.replace("depends: build.Succeeded", "depends: build").replace(
        """                when: "'{{tasks.approve.outputs.parameters.decision}}' == 'approve'"\n""", ""
    )
    report = lint([_write(tmp_path, text)])
    (finding,) = [f for f in report.findings if f.rule == "approval-not-dominating"]
    assert "gated task push can run although approve resumed with decision=" in finding.message


def test_secret_in_listed_template_is_allowed_but_not_elsewhere(tmp_path: Path) -> None:
    text = GATED.replace("imagegate.dev/credentials-templates: push", "imagegate.dev/credentials-templates: build")
    report = lint([_write(tmp_path, text)])
    assert [f.rule for f in report.findings] == ["credentials-outside-push"]


def test_python_script_with_a_parameter_is_a_warning_and_shell_an_error(tmp_path: Path) -> None:
    text = (CASES / "param-in-script-source.yaml").read_text().replace("command: [sh]", "command: [python]")
    report = lint([_write(tmp_path, text)])
    assert [(f.rule, f.severity) for f in report.findings] == [("param-in-script-source", Severity.WARNING)]
    assert lint([CASES / "param-in-script-source.yaml"]).findings[0].severity is Severity.ERROR


def test_non_argo_documents_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "mixed.yaml"
    path.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n" + (CASES / "dag-cycle.yaml").read_text()
    )
    report = lint([path])
    assert report.objects == 1
    assert {f.rule for f in report.findings} == {"dag-cycle"}


def test_cli_prints_file_line_rule_and_exits_1_on_errors(capsys: pytest.CaptureFixture[str]) -> None:
    case = CASES / "dag-unknown-dependency.yaml"
    assert main(["lint", str(case)]) == 1
    first = capsys.readouterr().out.splitlines()[0]
    assert re.fullmatch(rf"{re.escape(str(case))}:\d+: dag-unknown-dependency: dependency 'biuld' not defined.*", first)


def test_cli_warnings_alone_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", str(CASES / "suspend-without-duration.yaml")]) == 0
    assert "(warning)" in capsys.readouterr().out


def test_cli_json_is_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "--format", "json", str(CASES / "dag-cycle.yaml")]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [f["rule"] for f in data["findings"]] == ["dag-cycle"]
    assert (data["errors"], data["ok"]) == (1, False)
    assert data["findings"][0]["hint"]


def test_cli_missing_file_is_a_template_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["lint", str(tmp_path / "nope.yaml")]) == 5
    assert "TemplateError" in capsys.readouterr().err


def test_template_ref_into_a_linted_template_must_exist(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """\
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {name: lib}
        spec:
          templates:
            - name: hello
              container: {image: busybox}
        ---
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata: {generateName: use-lib-}
        spec:
          entrypoint: main
          templates:
            - name: main
              steps:
                - - name: ok
                    templateRef: {name: lib, template: hello}
                  - name: typo
                    templateRef: {name: lib, template: helo}
        """,
    )
    (finding,) = lint([path]).findings
    assert (finding.rule, finding.message) == ("template-not-found", "template reference lib.helo not found")
    assert (
        path.read_text().splitlines()[finding.line - 1].strip().startswith("templateRef: {name: lib, template: helo}")
    )


def test_malformed_object_gets_schema_findings_instead_of_a_crash(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """\
        apiVersion: argoproj.io/v1alpha1
        kind: WorkflowTemplate
        metadata: {name: malformed}
        spec:
          entrypoint: main
          templates:
            - name: main
              dag:
                tasks:
                  - "a string, not a task"
        """,
    )
    report = lint([path])
    assert "schema" in {f.rule for f in report.findings}
    assert not report.ok


def test_unquoted_phase_or_single_word_enum_is_safe_in_a_when(tmp_path: Path) -> None:
    text = (CASES / "when-unquoted-value.yaml").read_text()
    text = text.replace(
        "parameters: [{name: destination, value: registry.example.com/app:1}]",
        "parameters: [{name: mode, value: auto, enum: [auto, runner]}]",
    ).replace("when: \"{{workflow.parameters.destination}} != ''\"", "when: '{{workflow.parameters.mode}} == auto'")
    assert lint([_write(tmp_path, text)]).findings == []


def test_manifest_lines_point_at_keys_and_items(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(
        "kind: ConfigMap\napiVersion: v1\n---\n"  # skipped: not an Argo kind
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {generateName: w-}\nspec:\n"
        "  entrypoint: main\n  templates:\n    - name: main\n      container:\n        image: busybox\n"
    )
    (doc,) = load_paths([path])
    assert (doc.index, doc.name, doc.kind) == (1, "w-", "Workflow")
    assert doc.line(("spec", "templates", 0, "container", "image")) == 12
    assert doc.line(("spec", "templates", 0)) == 10
    assert doc.line(("spec", "templates", 0, "container", "no-such-key")) == 11  # nearest ancestor


def test_invalid_yaml_is_a_template_error_naming_the_file(tmp_path: Path) -> None:
    from workflows.errors import TemplateError

    path = tmp_path / "broken.yaml"
    path.write_text("kind: Workflow\nspec: [unclosed\n")
    with pytest.raises(TemplateError, match="broken.yaml: not valid YAML"):
        load_paths([path])


def test_gated_task_that_runs_when_the_gate_fails_is_caught(tmp_path: Path) -> None:
    text = GATED.replace("depends: build.Succeeded", "depends: approve.Failed").replace(
        """                when: "'{{tasks.approve.outputs.parameters.decision}}' == 'approve'"\n""", ""
    )
    (finding,) = [f for f in lint([_write(tmp_path, text)]).findings if f.rule == "approval-not-dominating"]
    assert "gated task push can run although approve failed" in finding.message


def test_every_rule_says_where_its_semantics_come_from() -> None:
    sources = ("validate.go", ".go:", "DESIGN.md", "argo.md", "schema", "executor.go")
    for rule in RULES.values():
        assert rule.doc and rule.hint, rule.id
        assert any(s in rule.doc for s in sources), f"{rule.id}: cite the Argo source or design rule it follows"
