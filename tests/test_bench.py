"""The benchmark suite is wired correctly: target logic, the measuring wrapper, each figure on tiny inputs.

No timing is asserted here (the machine is shared and noisy); `python -m bench` measures.
"""

import shutil
from pathlib import Path

import pytest

from bench import classify_log, digest, pods, rebuild, render_lint, run, startup
from bench._measure import ROOT, Figure, Measure, Op, Target, run_child

PYTHON_C_PASS = ["python3", "-c", "pass"]


def _has(path: str) -> bool:
    return (ROOT / path).is_file()


@pytest.mark.parametrize(
    ("target", "quantity", "met"),
    [
        pytest.param(Target(measure=Measure.VALUE, op=Op.LE, limit=3), 3, True, id="le-at-limit"),
        pytest.param(Target(measure=Measure.VALUE, op=Op.LE, limit=3), 4, False, id="le-over"),
        pytest.param(Target(measure=Measure.VALUE, op=Op.LT, limit=1.0), 1.0, False, id="lt-at-limit"),
        pytest.param(Target(measure=Measure.RATIO, op=Op.GE, limit=0.8), 0.8, True, id="ge-at-limit"),
        pytest.param(Target(measure=Measure.RATIO, op=Op.GE, limit=0.8), 0.79, False, id="ge-under"),
    ],
)
def test_target_compares_quantity_with_its_limit(target, quantity, met):
    assert target.met(quantity) is met


@pytest.mark.parametrize(
    ("measure", "value", "baseline", "verdict"),
    [
        pytest.param(Measure.RATIO, 1.0, 5.0, "PASS", id="ratio-0.2-within-0.25"),
        pytest.param(Measure.RATIO, 2.0, 5.0, "FAIL", id="ratio-0.4-over-0.25"),
        pytest.param(Measure.DELTA, 170.0, 20.0, "PASS", id="delta-150-at-limit"),
        pytest.param(Measure.DELTA, 171.0, 20.0, "FAIL", id="delta-151-over"),
    ],
)
def test_figure_checks_the_quantity_its_target_names(measure, value, baseline, verdict):
    limit = 0.25 if measure is Measure.RATIO else 150
    target = Target(measure=measure, op=Op.LE, limit=limit)
    figure = Figure(name="f", unit="x", value=value, baseline=baseline, target=target)
    assert figure.verdict == verdict
    assert figure.ratio == value / baseline
    assert figure.delta == value - baseline


def test_unmeasured_figure_is_an_error_that_counts_as_a_miss():
    figure = Figure(name="f", unit="s", target=Target(measure=Measure.VALUE, op=Op.LT, limit=1), error="not there")
    assert figure.verdict == "ERROR"
    assert figure.missed


def test_figure_without_target_is_information_and_never_a_miss():
    figure = Figure(name="f", unit="s", value=1.0, baseline=2.0)
    assert figure.verdict == "INFO"
    assert not figure.missed


def test_suite_exits_nonzero_when_any_target_is_missed(monkeypatch, capsys):
    good = Figure(name="good", unit="s", value=0.5, target=Target(measure=Measure.VALUE, op=Op.LT, limit=1))
    bad = Figure(name="bad", unit="s", value=2.0, target=Target(measure=Measure.VALUE, op=Op.LT, limit=1))
    monkeypatch.setattr(run, "SUITE", {"a": (lambda: [good], lambda: [good]), "b": (lambda: [bad], lambda: [bad])})
    assert run.main(["--only", "a"]) == 0
    assert run.main([]) == 1
    out = capsys.readouterr().out
    assert "missed: bad" in out


def test_a_crashing_figure_group_becomes_an_error_line_not_a_crash(monkeypatch):
    def broken() -> list[Figure]:
        raise RuntimeError("boom")

    monkeypatch.setattr(run, "SUITE", {"broken": (broken, broken)})
    [figure] = run.run(["broken"], progress=False)
    assert figure.verdict == "ERROR"
    assert "boom" in figure.error


def test_table_shows_every_figure_with_ratio_target_and_verdict():
    figures = [
        Figure(name="warm", unit="s", value=1.0, baseline=4.0, baseline_name="cold",
               target=Target(measure=Measure.RATIO, op=Op.LE, limit=0.25)),
        Figure(name="missing", unit="s", target=Target(measure=Measure.VALUE, op=Op.LT, limit=1), error="no code"),
    ]
    table = run.format_table(figures)
    assert "0.25x" in table and "ratio <= 0.25" in table and "PASS" in table
    assert "ERROR missing: no code" in table


def test_update_docs_replaces_only_the_figures_between_the_markers(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# B\nprose\n<!-- bench:figures:start -->\nold\n<!-- bench:figures:end -->\nmore prose\n")
    run.update_docs("| new | table |", doc)
    assert doc.read_text() == (
        "# B\nprose\n<!-- bench:figures:start -->\n| new | table |\n<!-- bench:figures:end -->\nmore prose\n"
    )


def test_update_docs_refuses_a_file_without_markers(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# B\n")
    with pytest.raises(ValueError, match="lacks the markers"):
        run.update_docs("x", doc)


def test_child_peak_rss_is_the_childs_own_not_the_parents():
    ballast = bytearray(256 * 1024 * 1024)  # the parent's RSS must not leak into the child's figure
    ballast[::4096] = b"x" * len(ballast[::4096])
    measured = run_child(PYTHON_C_PASS)
    assert measured.exit_code == 0
    assert 0 < measured.maxrss_mib < 64
    del ballast


def test_child_failure_reports_the_command_and_its_stderr():
    with pytest.raises(RuntimeError, match="exited 3: oops"):
        run_child(["python3", "-c", "import sys; sys.stderr.write('oops'); sys.exit(3)"])
    assert run_child(["false"], check=False).exit_code == 1


def test_generated_context_has_the_requested_size(tmp_path):
    files = digest.make_context(tmp_path / "ctx", 3 * 1024 * 1024 + 5)
    assert sum(f.stat().st_size for f in files) == 3 * 1024 * 1024 + 5
    assert (tmp_path / "ctx" / "Dockerfile").is_file()


def test_generated_log_ends_with_the_userns_failure(tmp_path):
    size = classify_log.make_log(tmp_path / "build.log", 2_000_000)
    assert 1_500_000 <= size <= 2_000_000
    tail = (tmp_path / "build.log").read_text()[-400:]
    assert "Error during unshare(CLONE_NEWUSER): Function not implemented" in tail


@pytest.mark.parametrize(
    ("python", "ere"),
    [
        pytest.param(r"^Error: (?:foo|bar)", "^Error: (foo|bar)", id="non-capturing-group"),
        pytest.param(r"exit status \d+", "exit status [0-9]+", id="digit-class"),
        pytest.param(r'under \"[^\"]*\"', 'under "[^"]*"', id="escaped-quote"),
        pytest.param(r"^\(?optional paren", r"^\(?optional paren", id="literal-paren-kept"),
    ],
)
def test_catalogue_patterns_translate_to_ere(python, ere):
    assert classify_log.to_ere(python) == ere


def test_every_catalogue_pattern_translates():
    assert len(classify_log.catalogue_patterns()) >= 30


def test_python_only_regex_is_refused_rather_than_mistranslated():
    with pytest.raises(ValueError, match="Python-only"):
        classify_log.to_ere(r"(?<=x)y")


def test_startup_measures_a_step_against_the_bare_interpreter():
    figures = startup.figures(repeats=1, modules=["build_runner", "no_such_step"])
    by_name = {f.name: f for f in figures}
    measured = by_name["start-up: steps.build_runner --help"]
    assert measured.value is not None and measured.baseline is not None and measured.error is None
    assert by_name["start-up: steps.no_such_step --help"].verdict == "ERROR"


def test_every_contract_step_is_benchmarked():
    from steps.contract import STEPS

    assert set(startup.step_modules()) == {spec.module for spec in STEPS.values()}


def _gated_template(gate_task: str) -> dict:
    tasks = [
        {"name": "validate", "template": "pod"},
        {"name": gate_task, "template": "gate", "depends": "validate"},
        {"name": "build", "template": "pod", "depends": gate_task},
        {"name": "push", "template": "pod", "depends": "build"},
    ]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {"name": "tiny"},
        "spec": {
            "entrypoint": "main",
            "onExit": "report",
            "templates": [
                {"name": "main", "dag": {"tasks": tasks}},
                {"name": "pod", "container": {"image": "busybox"}},
                {"name": "gate", "suspend": {}},
                {"name": "report", "container": {"image": "busybox"}},
            ],
        },
    }


def test_pods_after_approval_counts_pods_started_after_the_gate_exit_handler_included():
    from workflows.plan import plan

    count, tasks = pods.pods_after_approval(plan(_gated_template("approve")))
    assert (count, tasks) == (3, ["build", "push", "report"])


def test_pods_after_approval_refuses_a_plan_that_never_reached_the_gate():
    from workflows.plan import plan

    with pytest.raises(ValueError, match="never reached approve"):
        pods.pods_after_approval(plan(_gated_template("wait")))


@pytest.mark.skipif(not list((ROOT / "manifests").glob("*.yaml")), reason="manifests/ has not been rendered yet")
def test_pods_figures_plan_every_scenario_on_the_rendered_template():
    figures = pods.figures()
    assert len(figures) == len(pods.SCENARIOS)
    assert all(f.error is None and f.value >= 1 for f in figures)


@pytest.mark.skipif(not _has("workflows/render.py"), reason="workflows/render.py has not landed")
def test_render_lint_figure_renders_into_a_temporary_directory_never_manifests():
    before = {p: p.read_bytes() for p in (ROOT / "manifests").glob("*.yaml")}
    figures = render_lint.figures(repeats=1)
    assert [f.error for f in figures] == [None] * len(figures)
    assert figures[0].target is not None and figures[0].value > 0
    assert {p: p.read_bytes() for p in (ROOT / "manifests").glob("*.yaml")} == before


@pytest.mark.skipif(not _has("steps/synthetic.py"), reason="steps/synthetic.py has not landed")
def test_digest_figure_runs_on_a_small_context():
    throughput, rss = digest.figures(size_bytes=4 * 1024 * 1024, repeats=1)
    assert throughput.error is None and throughput.value > 0 and throughput.baseline > 0
    assert rss.value > 0


@pytest.mark.skipif(not _has("steps/classify.py"), reason="steps/classify.py has not landed")
def test_classify_figure_runs_on_a_small_log():
    time, memory = classify_log.figures(size_bytes=2 * 1024 * 1024, repeats=1)
    assert time.error is None and time.value > 0 and time.baseline > 0
    assert "builder_runtime_unavailable" in time.note
    assert memory.value > 0


@pytest.mark.real
@pytest.mark.skipif(shutil.which("buildah") is None, reason="buildah is not installed (scripts/setup installs it)")
def test_rebuild_figure_runs_in_a_private_store(tmp_path):
    figures = rebuild.figures(loops=10)
    assert [f.error for f in figures] == [None, None]
    assert all(f.value > 0 and f.baseline > 0 for f in figures)
    assert not list(Path("/tmp").glob("imagegate-bench-rebuild-*")), "generated data is removed"
