"""The package layering (pyproject.toml [tool.importlinter]) holds, and the check does catch a break."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(*args: str) -> subprocess.CompletedProcess:
    """Run import-linter's command line with this interpreter, from the repository root."""
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", code, "--no-cache", "--no-logo", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_the_layers_contract_is_kept():
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "comp reads like the pipeline: each layer imports only the layers below it KEPT" in result.stdout
    assert "comp.data.check imports neither torch nor albumentations KEPT" in result.stdout
    assert "0 broken" in result.stdout


def test_a_contract_the_code_breaks_is_reported(tmp_path):
    # Upside down: training imports the model, so "model above train" must fail.
    config = tmp_path / "bad.toml"
    config.write_text('[tool.importlinter]\nroot_package = "comp"\n\n'
                      '[[tool.importlinter.contracts]]\nname = "upside down"\ntype = "layers"\n'
                      'layers = ["comp.model", "comp.train"]\n')
    result = lint_imports(str(config))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "upside down BROKEN" in result.stdout
    assert "comp.train is not allowed to import comp.model" in result.stdout
