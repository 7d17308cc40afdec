"""Shared fixtures. Fixtures that start real services live in tests/realworld.py."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


@pytest.fixture
def shared() -> Path:
    """The read-only ../shared directory (Argo schema, CRDs, examples, research)."""
    if not SHARED.is_dir():
        pytest.skip(f"../shared is not beside the checkout ({SHARED})")
    return SHARED


@pytest.fixture(autouse=True)
def _no_inherited_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    # The old tool's variable changes CLI defaults; a developer's shell must not leak into tests.
    monkeypatch.delenv("WORKSPACE_IMAGE_BUILD_MODE", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
