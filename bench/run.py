"""The one command: `python -m bench [--only NAME ...] [--quick] [--format text|json|markdown] [--update-docs]`.

Runs every figure module, prints one line per figure (value, baseline, ratio, target,
verdict) and exits 1 when any target is missed or a figure could not be measured, 0
otherwise. `--quick` shrinks the generated data for a smoke run; its numbers are not the
documented figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/run.py`: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import classify_log, digest, machine, pods, rebuild, render_lint, startup
from bench._measure import ROOT, Figure, Measure

# Figure group -> (full-size run, quick run). Order: cheap first, so a broken checkout fails fast.
SUITE: dict[str, tuple[Callable[[], list[Figure]], Callable[[], list[Figure]]]] = {
    "pods": (pods.figures, pods.figures),
    "startup": (startup.figures, lambda: startup.figures(repeats=3)),
    "render-lint": (render_lint.figures, lambda: render_lint.figures(repeats=1)),
    "classify": (classify_log.figures, lambda: classify_log.figures(size_bytes=8 * 1024 * 1024)),
    "digest": (digest.figures, lambda: digest.figures(size_bytes=64 * 1024 * 1024)),
    "rebuild": (rebuild.figures, lambda: rebuild.figures(loops=20000)),
}


def _num(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    text = f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"
    if unit == "pods" and x == 1:
        unit = "pod"
    return f"{text} {unit}".strip()


def _ratio(f: Figure) -> str:
    if f.ratio is None:
        return "-"
    if f.target is not None and f.target.measure is Measure.DELTA and f.delta is not None:
        return f"{f.ratio:.2f}x ({f.delta:+.0f} {f.unit})"
    return f"{f.ratio:.2f}x"


def format_table(figures: list[Figure]) -> str:
    """The figures as an aligned plain-text table (also pasted into docs/benchmarks.md)."""
    rows = [("figure", "value", "baseline", "ratio", "target", "result")]
    for f in figures:
        baseline = f"{_num(f.baseline, f.unit)} ({f.baseline_name})" if f.baseline is not None else "-"
        ratio = _ratio(f)
        target = f.target.describe(f.unit) if f.target else "-"
        rows.append((f.name, _num(f.value, f.unit), baseline, ratio, target, f.verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    for f in figures:
        if f.error:
            lines.append(f"ERROR {f.name}: {f.error}")
        elif f.note:
            lines.append(f"note  {f.name}: {f.note}")
    return "\n".join(lines)


def format_markdown(figures: list[Figure], elapsed: float, d: dict) -> str:
    """The machine and the figures as Markdown, the block docs/benchmarks.md records."""
    lines = [
        f"Run {d['date']}. Machine: {d['nproc']} cores (`nproc`), {d['mem_total_gib']} GiB RAM (`free -h`), "
        f"kernel {d['kernel']}, "
        f"CPU {d['cpu']}, 1-minute load {d['loadavg_1m']} at the start, Python {d['python']}; "
        f"the suite took {elapsed:.0f} s.",
        "",
        "| figure | value | baseline (same run) | ratio | target | result |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for f in figures:
        baseline = f"{_num(f.baseline, f.unit)} ({f.baseline_name})" if f.baseline is not None else "-"
        ratio = _ratio(f)
        target = f.target.describe(f.unit) if f.target else "-"
        value = _num(f.value, f.unit) if f.error is None else f"not measured: {f.error}"
        lines.append(f"| {f.name} | {value} | {baseline} | {ratio} | {target} | **{f.verdict}** |")
    notes = [f"- {f.name}: {f.note}" for f in figures if f.note and f.error is None]
    return "\n".join(lines + ([""] + notes if notes else []))


DOCS = ROOT / "docs" / "benchmarks.md"
_START, _END = "<!-- bench:figures:start -->", "<!-- bench:figures:end -->"


def update_docs(block: str, path: Path = DOCS) -> None:
    """Replace the figures between the markers in docs/benchmarks.md with `block`."""
    text = path.read_text()
    head, sep, rest = text.partition(_START)
    _, sep2, tail = rest.partition(_END)
    if not sep or not sep2:
        raise ValueError(f"{path} lacks the markers {_START} ... {_END}")
    path.write_text(f"{head}{_START}\n{block}\n{_END}{tail}")


def run(groups: list[str], quick: bool = False, progress: bool = True) -> list[Figure]:
    """Run the named figure groups in suite order; a group that crashes becomes an ERROR line."""
    figures: list[Figure] = []
    for name in SUITE:
        if name not in groups:
            continue
        full, small = SUITE[name]
        start = time.monotonic()
        try:
            got = (small if quick else full)()
        except Exception as exc:  # one broken group must not hide the others' figures
            got = [Figure(name=name, unit="", error=f"{type(exc).__name__}: {exc}"[:300])]
        if progress:
            print(f"[bench] {name}: {len(got)} figure(s) in {time.monotonic() - start:.1f} s", file=sys.stderr)
        figures.extend(got)
    return figures


def main(argv: list[str] | None = None) -> int:
    """Run the suite; exit 1 if any target is missed."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=list(SUITE), help="run only this group (repeatable)")
    parser.add_argument("--quick", action="store_true", help="small generated data: a smoke run, not the figures")
    parser.add_argument("--format", choices=["text", "json", "markdown"], default="text")
    parser.add_argument("--update-docs", action="store_true",
                        help=f"also write the figures into {DOCS.relative_to(ROOT)} (between its markers)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    load = machine.describe()  # before the suite loads the machine itself
    figures = run(args.only or list(SUITE), quick=args.quick)
    elapsed = time.monotonic() - start
    if args.format == "json":
        print(json.dumps({
            "machine": load,
            "elapsed_s": elapsed,
            "figures": [f.model_dump() | {"ratio": f.ratio, "verdict": f.verdict} for f in figures],
        }, indent=2))
    elif args.format == "markdown":
        print(format_markdown(figures, elapsed, load))
    if args.update_docs:
        update_docs(format_markdown(figures, elapsed, load))
    if args.format == "text":
        print(machine.summary(load))
        print(format_table(figures))
        missed = [f.name for f in figures if f.missed]
        print(f"{len(figures) - len(missed)}/{len(figures)} figures met their targets in {elapsed:.0f} s"
              + (f"; missed: {', '.join(missed)}" if missed else ""))
    return 1 if any(f.missed for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
