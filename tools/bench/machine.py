"""What a figure needs to be judged: the commit, date, CPU model and
instruction sets, thread counts, load and package versions."""
import datetime
import os
import platform
import subprocess
import sys
from importlib import metadata
from typing import Any, Dict, List

#: Instruction sets that decide which kernels oneDNN, onnxruntime and
#: OpenVINO pick (the Linux /proc/cpuinfo flag names).
ISA_FLAGS = ('sse4_2', 'avx', 'avx2', 'fma', 'avx512f', 'avx512bw',
             'avx512_vnni', 'avx512_bf16', 'avx_vnni', 'amx_tile',
             'amx_int8', 'amx_bf16', 'amx_fp16')
#: Packages whose version moves the figures.
PACKAGES = ('torch', 'onnx', 'onnxruntime', 'openvino', 'mmcv', 'mmdet',
            'mmengine', 'numpy')


def cpu_info(path: str = '/proc/cpuinfo') -> Dict[str, Any]:
    """CPU model name and the :data:`ISA_FLAGS` it has (Linux)."""
    model, flags = platform.processor() or platform.machine(), set()
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(':')
                if key.strip() == 'model name':
                    model = value.strip()
                elif key.strip() == 'flags':
                    flags = set(value.split())
    return dict(model=model, isa=[f for f in ISA_FLAGS if f in flags],
                logical_cpus=os.cpu_count())


def git_commit(root: str) -> Dict[str, Any]:
    """HEAD of the checkout at `root`, and whether it has local changes."""
    def git(*args: str) -> str:
        return subprocess.run(['git', '-C', root, *args], text=True,
                              capture_output=True).stdout.strip()
    return dict(commit=git('rev-parse', 'HEAD') or None,
                dirty=bool(git('status', '--porcelain', '--untracked-files=no')))


def versions(packages=PACKAGES) -> Dict[str, str]:
    """Installed version of each package (``None`` when missing)."""
    found = dict(python=sys.version.split()[0])
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    from rexnet_det.version import __version__
    found['rexnet_det'] = __version__
    return found


def machine_record(root: str, threads: List[int]) -> Dict[str, Any]:
    """The ``meta`` block of a results file (without the end time)."""
    return dict(git_commit(root),
                date=datetime.datetime.now(datetime.timezone.utc)
                .isoformat(timespec='seconds'),
                cpu=cpu_info(), threads=list(threads),
                env={k: os.environ.get(k) for k in (
                    'OMP_NUM_THREADS', 'OMP_WAIT_POLICY',
                    'MALLOC_MMAP_THRESHOLD_')},
                load_average_start=list(os.getloadavg()),
                versions=versions())
