"""The action runner is started with python -S (fork.exec_module(site=False)): it must load
with the standard library and this package alone, whatever is installed beside them."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_runner_loads_without_site_packages():
    r = subprocess.run([sys.executable, "-S", "-c", "import hadaemon.runner"],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                       timeout=60)
    assert r.returncode == 0, r.stderr


def test_a_package_from_site_packages_does_not_load_so():  # the check above can fail
    r = subprocess.run([sys.executable, "-S", "-c", "import click"], capture_output=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60)
    assert r.returncode != 0
