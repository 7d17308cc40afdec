"""What every figure shares: targets, the Figure model, and timing one child process.

A `Figure` is one printed line: a value, the baseline it is compared with (measured in the
same run, or a documented constant such as Tekton's pod count), and a `Target` on the value,
the ratio value/baseline, or the difference value-baseline. `run_child` times a command
through `bench/_child.py`, which also reports the command's own peak RSS.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field

__all__ = [
    "IMAGEGATE",
    "MIB",
    "ROOT",
    "PYTHON",
    "ChildRun",
    "Figure",
    "Measure",
    "Op",
    "Target",
    "median_run",
    "missing",
    "run_child",
    "scratch",
]

ROOT = Path(__file__).resolve().parent.parent
# The interpreter running the suite (the checkout's venv): the same one step pods would use.
PYTHON = sys.executable
_CHILD = Path(__file__).resolve().parent / "_child.py"
# The console script users run, when the checkout is installed (scripts/setup does that).
_SCRIPT = Path(PYTHON).with_name("imagegate")
IMAGEGATE = [str(_SCRIPT)] if _SCRIPT.is_file() else [PYTHON, "-m", "workflows.cli"]
MIB = 1024 * 1024


class Op(StrEnum):
    """How a measured quantity is compared with its limit."""

    LE = "<="
    LT = "<"
    GE = ">="


class Measure(StrEnum):
    """Which quantity a target constrains."""

    VALUE = "value"
    RATIO = "ratio"  # value / baseline
    DELTA = "delta"  # value - baseline


class Target(BaseModel):
    """A limit on a figure's value, its ratio to the baseline, or its difference from it."""

    measure: Measure
    op: Op
    limit: float

    def met(self, quantity: float) -> bool:
        """Whether `quantity` (the measured value, ratio or delta) is within the limit."""
        if self.op is Op.LE:
            return quantity <= self.limit
        if self.op is Op.LT:
            return quantity < self.limit
        return quantity >= self.limit

    def describe(self, unit: str) -> str:
        """The target as printed: `ratio <= 0.25`, `value < 1 s`, `+<= 150 ms`."""
        limit = f"{self.limit:g}"
        if self.measure is Measure.RATIO:
            return f"ratio {self.op} {limit}"
        if self.measure is Measure.DELTA:
            return f"+ {self.op} {limit} {unit}"
        return f"{self.op} {limit} {unit}"


class Figure(BaseModel):
    """One benchmark line: value, baseline, ratio, target and whether it passed."""

    name: str
    unit: str
    value: float | None = Field(None, description="None when the figure could not be measured (see error).")
    baseline: float | None = None
    baseline_name: str = ""
    target: Target | None = Field(None, description="None for a line printed for information only.")
    note: str = ""
    error: str | None = Field(None, description="Why nothing was measured, e.g. the step does not exist yet.")

    @property
    def ratio(self) -> float | None:
        """value / baseline, when both exist and the baseline is not zero."""
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def delta(self) -> float | None:
        """value - baseline, when both exist."""
        if self.value is None or self.baseline is None:
            return None
        return self.value - self.baseline

    @property
    def checked(self) -> float | None:
        """The quantity the target constrains."""
        if self.target is None:
            return None
        return {Measure.VALUE: self.value, Measure.RATIO: self.ratio, Measure.DELTA: self.delta}[self.target.measure]

    @property
    def verdict(self) -> str:
        """PASS, FAIL, ERROR (could not measure: counts as a miss) or INFO (no target)."""
        if self.error is not None:
            return "ERROR"
        if self.target is None:
            return "INFO"
        quantity = self.checked
        return "PASS" if quantity is not None and self.target.met(quantity) else "FAIL"

    @property
    def missed(self) -> bool:
        """True when this line makes the suite exit non-zero."""
        return self.verdict in ("FAIL", "ERROR")


def missing(name: str, unit: str, target: Target, error: str) -> Figure:
    """A figure that could not be measured (counted as a missed target)."""
    return Figure(name=name, unit=unit, target=target, error=error)


class ChildRun(BaseModel):
    """What `_child.py` reports for one command."""

    wall_s: float
    user_s: float
    sys_s: float
    maxrss_kib: int
    exit_code: int

    @property
    def maxrss_mib(self) -> float:
        """Peak resident set size in MiB."""
        return self.maxrss_kib / 1024


def run_child(
    command: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    stdout: Path | None = None,
    check: bool = True,
) -> ChildRun:
    """Run `command` once under the measuring wrapper; stdout goes to a file (never /dev/null).

    GNU grep stops at the first match when its output is /dev/null, so every command writes
    to a real file instead, which keeps baselines honest.
    """
    with tempfile.TemporaryDirectory(prefix="imagegate-bench-child-") as tmp:
        report = Path(tmp) / "report.json"
        out_path = stdout or Path(tmp) / "stdout"
        err_path = Path(tmp) / "stderr"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            subprocess.run(
                [PYTHON, "-I", "-S", str(_CHILD), str(report), "--", *map(str, command)],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                check=True,
            )
        run = ChildRun.model_validate(json.loads(report.read_text()))
        if check and run.exit_code != 0:
            tail = err_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(map(str, command))} exited {run.exit_code}: {tail}")
        return run


def median_run(runs: Sequence[ChildRun]) -> ChildRun:
    """Median wall and CPU times, and the largest peak RSS, of repeated runs."""
    return ChildRun(
        wall_s=statistics.median(r.wall_s for r in runs),
        user_s=statistics.median(r.user_s for r in runs),
        sys_s=statistics.median(r.sys_s for r in runs),
        maxrss_kib=max(r.maxrss_kib for r in runs),
        exit_code=max(r.exit_code for r in runs),
    )


@contextmanager
def scratch(prefix: str, parent: Path | None = None) -> Iterator[Path]:
    """A temporary directory for generated data, removed afterwards whatever happens."""
    path = Path(tempfile.mkdtemp(prefix=f"imagegate-bench-{prefix}-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
