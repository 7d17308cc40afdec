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
CONTRACT = "steps.contract"


def step_modules() -> list[str]:
    """The step modules named by the contract, each once, in contract order."""
    return list(dict.fromkeys(spec.module for spec in STEPS.values()))


def _cpu_ms(run: ChildRun) -> float:
    return (run.user_s + run.sys_s) * 1000


def figures(repeats: int = 11, modules: Sequence[str] | None = None) -> list[Figure]:
    """One figure per step module: median start-up in ms against the bare interpreter.

    Also, for information: `import steps.contract` (what every step shares), and the slowest
    step's CPU time (user+sys), which a busy machine inflates far less than wall time.
    """
    modules = list(modules) if modules is not None else step_modules()
    present = [m for m in modules if (ROOT / "steps" / f"{m}.py").is_file()]
    commands = {"": [PYTHON, "-c", "pass"], CONTRACT: [PYTHON, "-c", f"import {CONTRACT}"]}
    commands |= {m: [PYTHON, "-m", f"steps.{m}", "--help"] for m in present}
    runs: dict[str, list[ChildRun]] = {key: [] for key in commands}
    errors: dict[str, str] = {}
    for _ in range(repeats):  # interleaved: a burst of load hits every command alike
        for key, command in commands.items():
            if key in errors:
                continue
            try:
                runs[key].append(run_child(command))
            except RuntimeError as exc:
                errors[key] = str(exc).splitlines()[-1][:200]
    medians = {key: median_run(r) for key, r in runs.items() if r and key not in errors}
    base = medians[""]
    base_ms = base.wall_s * 1000
    baseline_name = f"{BASELINE}, medians of {repeats}"
    result = [
        Figure(name=f"start-up: import {CONTRACT}", unit="ms", value=medians[CONTRACT].wall_s * 1000,
               baseline=base_ms, baseline_name=baseline_name,
               note="what every step shares (pydantic and the contract models)")
    ]
    for module in modules:
        name = f"start-up: steps.{module} --help"
        if module not in present:
            result.append(missing(name, "ms", TARGET, f"steps/{module}.py does not exist yet"))
        elif module in errors:
            result.append(missing(name, "ms", TARGET, errors[module]))
        else:
            result.append(Figure(name=name, unit="ms", value=medians[module].wall_s * 1000, baseline=base_ms,
                                 baseline_name=baseline_name, target=TARGET))
    measured = [m for m in present if m in medians]
    if measured:
        slowest = max(measured, key=lambda m: _cpu_ms(medians[m]))
        result.append(Figure(name=f"start-up CPU time: slowest step (steps.{slowest})", unit="ms",
                             value=_cpu_ms(medians[slowest]), baseline=_cpu_ms(base),
                             baseline_name=f"{BASELINE}, CPU time", note="user+sys: less sensitive to load than wall"))
    return result
