"""tools/setup_env.sh's environment checks (tools/check_env.py)."""
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

BROKEN = ('raise RuntimeError("operator torchvision::nms does not exist")\n')
WORKING = '__version__ = "0.28.0"\n'


def _check(tmp_path, torchvision_source):
    env = dict(os.environ, PYTHONPATH=ROOT)
    if torchvision_source is not None:
        package = tmp_path / 'site' / 'torchvision'
        package.mkdir(parents=True)
        (package / '__init__.py').write_text(torchvision_source)
        env['PYTHONPATH'] = f'{tmp_path / "site"}{os.pathsep}{ROOT}'
    return subprocess.run(
        [sys.executable, 'tools/check_env.py', 'torchvision'], cwd=ROOT,
        env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize('source', [None, WORKING])
def test_absent_or_working_torchvision_is_accepted(source, tmp_path):
    proc = _check(tmp_path, source)
    assert proc.returncode == 0, proc.stderr


def test_broken_torchvision_is_named(tmp_path):
    proc = _check(tmp_path, BROKEN)
    assert proc.returncode == 1
    assert 'the installed torchvision fails to import beside torch 2.' in \
        proc.stderr
    assert 'operator torchvision::nms does not exist' in proc.stderr
    assert 'pip uninstall -y torchvision' in proc.stderr
