"""The dependency direction of DESIGN.md: steps/ stays small and never reaches the Argo side."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STEP_MODULES = sorted(p.stem for p in (ROOT / "steps").glob("*.py") if p.stem != "__init__")
FORBIDDEN = ("workflows", "hera", "yaml", "kubernetes", "requests", "jsonschema")


@pytest.mark.parametrize("module", STEP_MODULES)
def test_step_module_imports_only_stdlib_and_pydantic(module):
    probe = (
        f"import importlib, json, sys; importlib.import_module('steps.{module}'); "
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    bad = [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    assert bad == [], f"steps.{module} pulls in {bad[:5]}"


def test_every_step_in_the_contract_has_a_module_with_main():
    from steps.contract import STEPS

    for name, spec in STEPS.items():
        path = ROOT / "steps" / f"{spec.module}.py"
        assert path.is_file(), f"STEPS[{name!r}] names steps/{spec.module}.py, which does not exist"
        text = path.read_text()
        assert "def main(" in text and '__name__ == "__main__"' in text, f"steps/{spec.module}.py lacks main()"
