"""What every step shares: argument parsing helpers and writing output files.

Steps read request parameters as repeated `--param NAME=VALUE` (the kebab-case names of
steps.contract.BuildRequest), the policy from a mounted ConfigMap directory, and write
one file per declared output into `--out` (default steps.contract.OUTPUT_DIR).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from steps.contract import OUTPUT_DIR, POLICY_DIR, STEPS, Policy
from steps.errors import InputError

__all__ = ["add_common_args", "load_policy", "parse_param_pairs", "write_outputs"]


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """`--out DIR`, the directory the template reads output parameters from."""
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("IMAGEGATE_OUT", OUTPUT_DIR)),
                        help=f"directory for output files (default {OUTPUT_DIR})")


def parse_param_pairs(pairs: list[str] | None) -> dict[str, str]:
    """Repeated `--param NAME=VALUE` into a dict; a value may itself contain '='."""
    params: dict[str, str] = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        if not sep:
            raise InputError(f"--param {pair!r} is not NAME=VALUE")
        params[name] = value
    return params


def load_policy(policy_dir: Path | None) -> Policy:
    """The policy ConfigMap as mounted (one file per key); safe defaults when not mounted."""
    directory = policy_dir or Path(POLICY_DIR)
    if not directory.is_dir():
        return Policy()
    data = {
        f.name: f.read_text().strip()
        for f in sorted(directory.iterdir())
        if f.is_file() and not f.name.startswith(".")  # ConfigMap volumes carry ..data links
    }
    try:
        return Policy.from_configmap_data(data)
    except ValueError as exc:
        raise InputError(f"policy in {directory}: {exc}") from None


def write_outputs(step: str, out: Path, values: dict[str, str]) -> None:
    """Write one file per output of `step`; names must be exactly those declared in STEPS."""
    declared = STEPS[step].outputs
    unknown = set(values) - set(declared)
    if unknown:
        raise ValueError(f"step {step} has no outputs {sorted(unknown)}; declare them in steps.contract.STEPS")
    out.mkdir(parents=True, exist_ok=True)
    for name, value in values.items():
        tmp = out / f".{name}.tmp"
        tmp.write_text(value)
        tmp.replace(out / name)  # atomic: a reader never sees half a result
