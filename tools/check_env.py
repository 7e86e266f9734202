"""Checks that tools/setup_env.sh runs on the environment it builds.

    python tools/check_env.py torchvision   # torchvision absent or importable
    python tools/check_env.py imports       # the whole stack imports

Exits 1 with a message naming the problem and the fix.
"""
import importlib.util
import sys


def check_torchvision() -> None:
    """A torchvision that matches torch (a CPU or CUDA pair, as mmpretrain
    users have) is fine; one that fails to import beside torch crashes
    mmengine and mmdet at import."""
    if importlib.util.find_spec('torchvision') is None:
        return
    import torch
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # a mismatched build raises many types
        first = str(exc).splitlines()[0] if str(exc) else ''
        sys.exit(f'the installed torchvision fails to import beside torch '
                 f'{torch.__version__} ({type(exc).__name__}: {first}) and '
                 'would crash mmengine/mmdet. Install the torchvision built '
                 'for this torch, or remove it: pip uninstall -y torchvision')


def check_imports() -> None:
    check_torchvision()
    import mmcv  # noqa: F401
    import mmdet  # noqa: F401
    import mmengine  # noqa: F401
    import torch  # noqa: F401
    from mmcv.ops import RoIAlign, nms  # noqa: F401  compiled ops
    import onnx  # noqa: F401  the deploy extra
    import onnxruntime  # noqa: F401
    import openvino  # noqa: F401
    import rexnet_det  # noqa: F401


if __name__ == '__main__':
    checks = {'torchvision': check_torchvision, 'imports': check_imports}
    if len(sys.argv) != 2 or sys.argv[1] not in checks:
        sys.exit(f'usage: check_env.py {{{",".join(checks)}}}')
    checks[sys.argv[1]]()
