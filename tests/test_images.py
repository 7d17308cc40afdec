"""The Containerfiles in images/: pinned bases, non-root users, only the steps package inside."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTAINERFILES = sorted((ROOT / "images").glob("*/Containerfile"))


def instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_both_images_exist():
    assert [p.parent.name for p in CONTAINERFILES] == ["runner", "steps"]


@pytest.mark.parametrize("path", CONTAINERFILES, ids=lambda p: p.parent.name)
def test_base_is_pinned_by_digest_with_its_tag_named(path):
    args = dict(arg.split("=", 1) for kind, arg in instructions(path) if kind == "ARG" and "=" in arg)
    froms = [arg for kind, arg in instructions(path) if kind == "FROM"]
    assert froms, f"{path} has no FROM"
    for ref in froms:
        ref = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], ref.split()[0])
        assert re.search(r":[\w.-]+@sha256:[0-9a-f]{64}$", ref), f"{ref} is not tag@digest"


@pytest.mark.parametrize("path", CONTAINERFILES, ids=lambda p: p.parent.name)
def test_runs_as_a_numeric_non_root_user(path):
    users = [arg for kind, arg in instructions(path) if kind == "USER"]
    assert users, f"{path} never sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0


@pytest.mark.parametrize("path", CONTAINERFILES, ids=lambda p: p.parent.name)
def test_copies_only_the_steps_package(path):
    copies = [arg for kind, arg in instructions(path) if kind in ("COPY", "ADD")]
    assert copies == ["steps/*.py steps/*.json /opt/imagegate/steps/"]
