"""tools/setup_env.sh's environment checks (tools/check_env.py)."""
import sys

import pytest

from tests.conftest import load_tool

BROKEN = ('raise RuntimeError("operator torchvision::nms does not exist")\n')
WORKING = '__version__ = "0.28.0"\n'


@pytest.fixture
def check_torchvision(tmp_path, monkeypatch):
    """tools/check_env.py's check, with a torchvision package of the given
    source first on the path (removed again afterwards)."""
    tool = load_tool('check_env.py')

    def check(source):
        if source is not None:
            package = tmp_path / 'site' / 'torchvision'
            package.mkdir(parents=True)
            (package / '__init__.py').write_text(source)
            monkeypatch.syspath_prepend(str(tmp_path / 'site'))
        monkeypatch.delitem(sys.modules, 'torchvision', raising=False)
        try:
            tool.check_torchvision()
        finally:
            sys.modules.pop('torchvision', None)

    return check


@pytest.mark.parametrize('source', [None, WORKING])
def test_absent_or_working_torchvision_is_accepted(source, check_torchvision):
    check_torchvision(source)  # does not exit


def test_broken_torchvision_is_named(check_torchvision):
    with pytest.raises(SystemExit) as exc:
        check_torchvision(BROKEN)
    message = str(exc.value.code)
    assert message.startswith('the installed torchvision fails to import '
                              'beside torch 2.')
    assert 'operator torchvision::nms does not exist' in message
    assert 'pip uninstall -y torchvision' in message
