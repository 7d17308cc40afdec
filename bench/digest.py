"""Synthetic digest: hashing a generated 1 GiB build context against `sha256sum` over the same bytes.

The synthetic step derives its digest from the request and a streaming content hash of the
context, so a large context must cost no more than reading it once. Baseline: GNU
`sha256sum` over the same files in the same run, after one warm-up pass so both read from
the page cache. Targets: throughput >= 0.8 x sha256sum's, and the step's own peak RSS
<= 64 MiB (measured for the child process, see bench/_child.py).
"""

from __future__ import annotations

import os
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
from steps.contract import BuildRequest, Classification, FailureClass

GIB = 1024 * MIB
THROUGHPUT = Target(measure=Measure.RATIO, op=Op.GE, limit=0.8)
PEAK_RSS = Target(measure=Measure.VALUE, op=Op.LE, limit=64)
_FILE_BYTES = 16 * MIB


def make_context(directory: Path, size_bytes: int) -> list[Path]:
    """Write a context of about `size_bytes`: a Dockerfile and 16 MiB files in a few subdirectories.

    The bytes are random (one random block, rotated per file, so generation is fast and no two
    files are equal); hashing speed does not depend on their content.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Dockerfile").write_text("FROM scratch\nCOPY . /data\n")
    block = os.urandom(min(_FILE_BYTES, size_bytes))
    files = []
    written = 0
    index = 0
    while written < size_bytes:
        size = min(len(block), size_bytes - written)
        shift = (index * 4099) % len(block)
        path = directory / f"d{index % 8}" / f"blob-{index:04d}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes((block[shift:] + block[:shift])[:size])
        files.append(path)
        written += size
        index += 1
    os.sync()  # no writeback of the fresh files during the timed runs
    return files


def synthetic_command(workspace: Path, context: str, out: Path) -> list[str]:
    """`python -m steps.synthetic` for a non-strict request whose build hit the runtime wall."""
    request = BuildRequest(context=context, destination="registry.example.com/bench/app:1")
    classification = Classification(
        class_=FailureClass.BUILDER_RUNTIME_UNAVAILABLE,
        fallback_allowed=True,
        signature="bench",
        message="Error during unshare(CLONE_NEWUSER): Function not implemented",
    )
    return [
        PYTHON, "-m", "steps.synthetic",
        "--request", request.to_json(),
        "--classification", classification.to_json(),
        "--workspace", str(workspace),
        "--out", str(out),
    ]


def figures(size_bytes: int = GIB, repeats: int = 2) -> list[Figure]:
    """Throughput ratio and peak RSS of the synthetic step on a generated context."""
    name = f"synthetic digest: {size_bytes / MIB:.0f} MiB context"
    if not (ROOT / "steps" / "synthetic.py").is_file():
        error = "steps/synthetic.py does not exist yet"
        return [missing(f"{name}, throughput", "MiB/s", THROUGHPUT, error),
                missing(f"{name}, peak RSS", "MiB", PEAK_RSS, error)]
    with scratch("digest") as work:
        files = make_context(work / "ctx", size_bytes)
        total = sum(f.stat().st_size for f in files)
        baseline_cmd = ["sha256sum", *map(str, files)]
        run_child(baseline_cmd)  # warm-up: both contestants then read from the page cache
        base_runs: list[ChildRun] = []
        step_runs: list[ChildRun] = []
        for i in range(repeats):
            base_runs.append(run_child(baseline_cmd))
            out = work / f"out-{i}"
            step_runs.append(run_child(synthetic_command(work, "ctx", out)))
            if not (out / "digest").read_text().startswith("sha256:"):
                raise RuntimeError(f"steps.synthetic wrote no digest in {out}")
        floor = run_child([PYTHON, "-c", "import steps.contract"])
    base, step = median_run(base_runs), median_run(step_runs)
    return [
        Figure(
            name=f"{name}, throughput", unit="MiB/s", value=total / MIB / step.wall_s,
            baseline=total / MIB / base.wall_s, baseline_name="sha256sum, same bytes", target=THROUGHPUT,
            note=f"median of {repeats}; step {step.wall_s:.2f} s wall ({step.user_s:.2f} s user) vs "
                 f"sha256sum {base.wall_s:.2f} s, including the step's interpreter start",
        ),
        Figure(
            name=f"{name}, peak RSS", unit="MiB", value=step.maxrss_mib, baseline=floor.maxrss_mib,
            baseline_name="python -c 'import steps.contract'", target=PEAK_RSS,
        ),
    ]
