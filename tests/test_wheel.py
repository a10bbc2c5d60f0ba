"""The wheel holds the Jupyter parts, and installing it is all it takes: the server extension is enabled and the lab
extension listed in a fresh virtual environment.

The wheel is built from this checkout with the build outputs `make` already produced (nbml/static, nbml/labextension:
hatch-jupyter-builder's ensured targets, which fail the build when missing), without npm and without build isolation
(no download). The fresh environment is made from the base interpreter; a .pth line lends it .venv's packages for the
dependencies (installed with --no-deps, as pip would have resolved them), while nbml itself comes only from the wheel.
"""
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SERVER_CONFIG = "etc/jupyter/jupyter_server_config.d/nbml.json"
LAB_PACKAGE = "share/jupyter/labextensions/nbml/package.json"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    env = {**os.environ, "HATCH_JUPYTER_BUILDER_SKIP_NPM": "1"}
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(out), str(REPO)], env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    [whl] = out.glob("nbml-*.whl")
    return whl


def test_wheel_holds_the_server_config_and_the_lab_extension(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        data = next(n.split("/data/")[0] + "/data/" for n in names if ".data/data/" in n)
        assert data + SERVER_CONFIG in names
        assert '"nbml.jupyter": true' in z.read(data + SERVER_CONFIG).decode()
        assert "nbml/jupyter/proxy.py" in names and "nbml/serving/registry.py" in names
        assert data + LAB_PACKAGE in names, "the side panel's build output is missing from the wheel"
        assert any(n.startswith(data + "share/jupyter/labextensions/nbml/static/remoteEntry.") for n in names)


def test_pip_install_enables_the_extensions_in_a_fresh_venv(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    here = Path(next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)))
    (site / "lend-dev-venv.pth").write_text(f"{here}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(tmp_path), JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_DATA_DIR=str(tmp_path / "d"),
               PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")

    def run(*args):
        done = subprocess.run([str(python), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr).split())   # no colours

    run("-m", "pip", "install", "--no-deps", "-q", str(wheel))
    where = run("-c", "import nbml; print(nbml.__file__)")
    assert where.strip().startswith(str(site)), f"nbml was not imported from the wheel: {where}"
    assert (venv / SERVER_CONFIG).is_file()

    servers = run("-m", "jupyter_server", "extension", "list")
    assert f"Config dir: {venv}/etc/jupyter nbml.jupyter enabled - Validating nbml.jupyter... nbml.jupyter OK" \
        in servers, servers
    labs = run("-m", "jupyterlab.labextensions", "list")
    assert "nbml v0.1.0 enabled OK" in labs, labs
