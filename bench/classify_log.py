"""Classify on a 200 MB build log against `grep -E` with the same patterns, and its memory.

classify streams the failed build's log and matches the signature catalogue, so a huge log
(a chatty build, a loop printing errors) must cost about what a grep costs and no more
memory than a small one. Baseline: GNU `grep -E -c -f PATTERNS` (every catalogue pattern,
translated from Python to POSIX ERE) over the same file in the same run. Targets: time
<= 3 x grep's; peak RSS on the full log at most 8 MiB above the peak on a 1% log.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench._measure import (
    MIB,
    PYTHON,
    ROOT,
    ChildRun,
    Figure,
    Measure,
    Op,
    Target,
    median_run,
    missing,
    run_child,
    scratch,
)

TIME = Target(measure=Measure.RATIO, op=Op.LE, limit=3)
CONSTANT_MEMORY = Target(measure=Measure.DELTA, op=Op.LE, limit=8)
LOG_BYTES = 200 * 1000 * 1000

# A chatty but ordinary buildah build: pulls, package installs, a compiler. None of these
# lines is a failure signature; the failure comes at the very end, as in a real log.
_NOISE = [
    "STEP {n}/12: RUN apt-get update && apt-get install -y --no-install-recommends build-essential",
    "Getting image source signatures",
    "Copying blob sha256:{h} done   | {n} KiB / 31.4 MiB",
    "Get:{n} http://deb.debian.org/debian bookworm/main amd64 libc6-dev amd64 2.36-9+deb12u{n} [1904 kB]",
    "Unpacking libgcc-12-dev:amd64 (12.2.0-14) over (12.2.0-14) ...",
    "Setting up gcc-12 (12.2.0-14) ...",
    "gcc -O2 -g -Wall -fPIC -c src/module_{n}.c -o build/module_{n}.o",
    "src/module_{n}.c:{n}:5: warning: unused variable 'tmp' [-Wunused-variable]",
    "Collecting requests==2.31.{n}",
    "  Downloading requests-2.31.0-py3-none-any.whl (62 kB)",
    "Successfully installed certifi-2024.2.2 charset-normalizer-3.3.2 idna-3.6 urllib3-2.2.{n}",
    "npm WARN deprecated inflight@1.0.6: This module is not supported, and leaks memory",
    "added {n} packages, and audited 1204 packages in 14s",
    "COMMIT localhost/app:build-{n}",
    "--> {h}",
    'time="2026-12-04T10:00:00Z" level=info msg="Running step {n} in layer cache"',
]
# The real stderr of rootless buildah whose unshare(CLONE_NEWUSER) was refused
# (shared/research/machine.md, section 5): the line classify exists to find.
_FAILURE = (
    "Error during unshare(CLONE_NEWUSER): Function not implemented\n"
    'time="2026-12-04T09:35:13Z" level=error msg="parsing PID \\"\\": strconv.Atoi: parsing \\"\\": invalid syntax"\n'
    'time="2026-12-04T09:35:13Z" level=error msg="(Unable to determine exit status)"\n'
)


def make_log(path: Path, size_bytes: int) -> int:
    """Write about `size_bytes` of build log ending in the userns failure; returns the size."""
    lines = [
        line.format(n=i % 997, h=f"{i * 2654435761 % 2**64:016x}" * 4)
        for i in range(4000)
        for line in (_NOISE[i % len(_NOISE)],)
    ]
    chunk = ("\n".join(lines) + "\n").encode()
    with path.open("wb") as f:
        written = 0
        while written + len(chunk) < size_bytes:
            f.write(chunk)
            written += len(chunk)
        f.write(_FAILURE.encode())
    return path.stat().st_size


# Python escapes with a different spelling in ERE. GNU grep -E knows \\s, \\S and \\w itself, and
# warns about a stray backslash before an ordinary character such as a quote.
_ERE = (("(?:", "("), ("\\d", "[0-9]"), ('\\"', '"'), ("\\'", "'"))
BUILDER = "buildah"  # the runner mode's log, as the template passes --builder


def to_ere(pattern: str) -> str:
    """A catalogue regex (Python syntax) as POSIX ERE for `grep -E`."""
    ere = pattern
    for python, posix in _ERE:
        ere = ere.replace(python, posix)
    if re.search(r"(?<!\\)\(\?", ere):  # (?P<, (?=, (?i) ... but not a literal \(?
        raise ValueError(f"pattern {pattern!r} uses a Python-only construct grep -E lacks")
    return ere


def catalogue_patterns(builder: str = BUILDER) -> list[str]:
    """Every pattern classify matches a `builder` log against, from its own catalogue (the one source)."""
    from steps import classify

    catalogue = classify.load_catalogue()
    signatures = catalogue.matcher(builder).signatures
    return [to_ere(p) for p in [s.pattern for s in signatures] + catalogue.build_started]


def _classify_command(log: Path, out: Path) -> list[str]:
    return [PYTHON, "-m", "steps.classify", "--log", str(log), "--exit-code", "1", "--builder", BUILDER,
            "--out", str(out)]


def figures(size_bytes: int = LOG_BYTES, repeats: int = 2) -> list[Figure]:
    """Time against grep -E and the memory growth from a 1% log to the full one."""
    name = f"classify: {size_bytes / 1e6:.0f} MB log"
    if not (ROOT / "steps" / "classify.py").is_file():
        error = "steps/classify.py does not exist yet"
        return [missing(f"{name}, time", "s", TIME, error), missing(f"{name}, memory", "MiB", CONSTANT_MEMORY, error)]
    patterns = catalogue_patterns()
    with scratch("classify") as work:
        log, small = work / "build.log", work / "small.log"
        total = make_log(log, size_bytes)
        make_log(small, max(size_bytes // 100, MIB))
        (work / "patterns").write_text("\n".join(patterns) + "\n")
        grep = ["grep", "-E", "-c", "-f", str(work / "patterns"), str(log)]
        run_child(grep, stdout=work / "grep.out", check=False)  # warm-up; grep exits 1 when nothing matches
        grep_runs: list[ChildRun] = []
        step_runs: list[ChildRun] = []
        for i in range(repeats):
            grep_runs.append(run_child(grep, stdout=work / "grep.out", check=False))
            step_runs.append(run_child(_classify_command(log, work / f"out-{i}"), stdout=work / "classify.out"))
        verdict = (work / "out-0" / "class").read_text()
        small_run = run_child(_classify_command(small, work / "out-small"), stdout=work / "classify.out")
    base, step = median_run(grep_runs), median_run(step_runs)
    return [
        Figure(
            name=f"{name}, time", unit="s", value=step.wall_s, baseline=base.wall_s,
            baseline_name=f"grep -E, {len(patterns)} patterns", target=TIME,
            note=f"median of {repeats} over {total / 1e6:.0f} MB; classify said {verdict}",
        ),
        Figure(
            name=f"{name}, memory", unit="MiB", value=step.maxrss_mib, baseline=small_run.maxrss_mib,
            baseline_name="peak RSS on a 1% log", target=CONSTANT_MEMORY,
        ),
    ]
