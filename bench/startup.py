"""Step start-up: `python -m steps.NAME --help` for every step against bare `python -c pass`.

Each pod on the pipeline's path starts an interpreter and imports its step before doing
anything, so import cost is paid once per pod. Runs are interleaved (baseline, then every
step, repeated) so a burst of load on the shared machine hits all of them alike, and each
figure is the median. Target: at most +150 ms over the bare interpreter.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench._measure import PYTHON, ROOT, ChildRun, Figure, Measure, Op, Target, median_run, missing, run_child
from steps.contract import STEPS

TARGET = Target(measure=Measure.DELTA, op=Op.LE, limit=150)
BASELINE = "python -c pass"


def step_modules() -> list[str]:
    """The step modules named by the contract, each once, in contract order."""
    return list(dict.fromkeys(spec.module for spec in STEPS.values()))


def figures(repeats: int = 9, modules: Sequence[str] | None = None) -> list[Figure]:
    """One figure per step module: median start-up in ms against the bare interpreter."""
    modules = list(modules) if modules is not None else step_modules()
    present = [m for m in modules if (ROOT / "steps" / f"{m}.py").is_file()]
    baseline: list[ChildRun] = []
    runs: dict[str, list[ChildRun]] = {m: [] for m in present}
    errors: dict[str, str] = {}
    for _ in range(repeats):
        baseline.append(run_child([PYTHON, "-c", "pass"]))
        for module in present:
            if module in errors:
                continue
            try:
                runs[module].append(run_child([PYTHON, "-m", f"steps.{module}", "--help"]))
            except RuntimeError as exc:
                errors[module] = str(exc).splitlines()[-1][:200]
    base_ms = median_run(baseline).wall_s * 1000
    baseline_name = f"{BASELINE}, medians of {repeats}"
    # What every step pays before its own code: the contract, hence pydantic (information only).
    contract = median_run([run_child([PYTHON, "-c", "import steps.contract"]) for _ in range(repeats)])
    result = [
        Figure(name="start-up: import steps.contract", unit="ms", value=contract.wall_s * 1000, baseline=base_ms,
               baseline_name=baseline_name, note="what every step shares (pydantic and the contract models)")
    ]
    for module in modules:
        name = f"start-up: steps.{module} --help"
        if module not in present:
            result.append(missing(name, "ms", TARGET, f"steps/{module}.py does not exist yet"))
        elif module in errors:
            result.append(missing(name, "ms", TARGET, errors[module]))
        else:
            value = median_run(runs[module]).wall_s * 1000
            result.append(Figure(name=name, unit="ms", value=value, baseline=base_ms, baseline_name=baseline_name,
                                 target=TARGET))
    return result
