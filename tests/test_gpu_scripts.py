"""The prepared GPU scripts: each parses, and gpu/env.sh's module check installs or refuses up front."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "gpu").glob("*.sh"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_gpu_script_parses(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0


@pytest.mark.parametrize("script", [p for p in SCRIPTS if p.name not in ("env.sh", "wheels.sh", "carry_bnb.sh", "carry_textclf.sh")],
                         ids=lambda p: p.name)
def test_gpu_run_scripts_share_env(script):
    assert 'source "$(dirname "$0")/env.sh"' in script.read_text(), f"{script.name} sets up the image its own way"


def _require(tmp_path, wheels, *modules):
    cmd = f'set -euo pipefail; source gpu/env.sh; gpu_require {wheels} {" ".join(modules)}; "$PY" -c "import {modules[-1]}"; echo ready'
    env = {"PATH": "/usr/bin:/bin", "PY": sys.executable, "GPU_SITE": str(tmp_path / "site"), "HOME": str(tmp_path)}
    return subprocess.run(["bash", "-c", cmd], cwd=REPO, env=env, capture_output=True, text=True)


def test_gpu_require_installs_a_carried_wheel_only_when_missing(tmp_path):
    wheels = tmp_path / "whl"
    wheels.mkdir()
    name = "carried_probe_mod"
    with zipfile.ZipFile(wheels / f"{name}-1.0-py3-none-any.whl", "w") as whl:
        whl.writestr(f"{name}.py", "VALUE = 1\n")
        info = f"{name}-1.0.dist-info"
        whl.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        whl.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr(f"{info}/RECORD", "")
    done = _require(tmp_path, wheels, "json", name)
    assert done.returncode == 0 and done.stdout.strip().endswith("ready"), done.stderr
    assert f"installing carried wheels from {wheels} for: {name}" in done.stdout
    assert (tmp_path / "site" / f"{name}.py").exists()

    present = _require(tmp_path, wheels, "json")
    assert present.returncode == 0 and "installing" not in present.stdout


def test_gpu_require_names_what_is_missing_and_stops(tmp_path):
    done = _require(tmp_path, tmp_path / "no-wheels", "json", "no_such_module_here")
    assert done.returncode == 2 and "ready" not in done.stdout
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: missing Python modules: no_such_module_here; carry their wheels in {tmp_path / 'no-wheels'} (gpu/README.md)")
