"""Render + lint of all manifests, as CI or a pre-commit hook runs them, against a bare interpreter.

`imagegate render --out TMP` writes every manifest (never the committed manifests/), then
`imagegate lint TMP` checks them: two processes, the way a user runs them. Target:
the pair under 1 s wall; the ratio is against `python -c pass` measured in the same run.
For reference, the same work in one interpreter through the library is printed too.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from bench._measure import IMAGEGATE, PYTHON, ROOT, Figure, Measure, Op, Target, median_run, missing, run_child, scratch

TARGET = Target(measure=Measure.VALUE, op=Op.LT, limit=1.0)
BASELINE = "python -c pass"
# Library path: one interpreter renders then lints (the functions the two commands call).
_IN_PROCESS = (
    "import sys; from workflows import lint, render; "
    "render.render(out=sys.argv[1], check=False, config_path=None); "
    "sys.exit(0 if lint.lint([sys.argv[1]]).ok else 1)"
)


def _yaml_files(directory: Path) -> list[str]:
    return sorted(str(p) for p in directory.rglob("*.yaml"))


def figures(repeats: int = 3) -> list[Figure]:
    """The CLI pair's median wall time (target); each command alone and the library path (information)."""
    name = "render + lint: imagegate render, imagegate lint"
    for module in ("render", "lint"):
        if not (ROOT / "workflows" / f"{module}.py").is_file():
            return [missing(name, "s", TARGET, f"workflows/{module}.py does not exist yet")]
    runs: dict[str, list[float]] = {"pair": [], "render": [], "lint": [], "library": []}
    baseline = []
    with scratch("render") as work:
        for i in range(repeats):
            baseline.append(run_child([PYTHON, "-c", "pass"]))
            out = work / f"cli-{i}"
            render = run_child([*IMAGEGATE, "render", "--out", str(out)]).wall_s
            lint = run_child([*IMAGEGATE, "lint", str(out)]).wall_s
            runs["render"].append(render)
            runs["lint"].append(lint)
            runs["pair"].append(render + lint)
            runs["library"].append(run_child([PYTHON, "-c", _IN_PROCESS, str(work / f"lib-{i}")]).wall_s)
        count = len(_yaml_files(work / "cli-0"))
    base_s = median_run(baseline).wall_s
    median = {key: statistics.median(values) for key, values in runs.items()}

    def info(label: str, key: str, note: str = "") -> Figure:
        return Figure(name=label, unit="s", value=median[key], baseline=base_s, baseline_name=BASELINE, note=note)

    return [
        Figure(name=name, unit="s", value=median["pair"], baseline=base_s, baseline_name=BASELINE, target=TARGET,
               note=f"median of {repeats}; {count} manifest files rendered into a temporary directory, then linted"),
        info("render + lint: imagegate render alone", "render"),
        info("render + lint: imagegate lint alone", "lint"),
        info("render + lint: one interpreter (library)", "library", "render.render then lint.lint, same files"),
    ]
