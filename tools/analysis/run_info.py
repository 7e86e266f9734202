"""What a benchmark record needs besides its figures: commit, date, CPU
model and instruction sets, core count, versions and timing environment."""
import datetime
import os
import os.path as osp
import platform
import subprocess

import torch

#: Instruction sets that decide which CPU kernels run.
ISA_FLAGS = {'avx2', 'avx512f', 'avx512_vnni', 'avx_vnni', 'avx512_bf16',
             'amx_bf16', 'amx_int8', 'amx_tile'}


def machine() -> dict:
    """Commit, date, CPU, instruction sets and versions of this run."""
    import mmcv, mmdet, mmengine, onnxruntime  # noqa: E401
    with open('/proc/cpuinfo') as f:  # Linux, as the rest of the tools
        cpu = {k.strip(): v.strip() for k, v in (
            line.split(':', 1) for line in f if ':' in line)}
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    return dict(commit=subprocess.run(
        ['git', 'rev-parse', 'HEAD'], cwd=root, text=True,
        capture_output=True).stdout.strip(), date=datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec='seconds'),
        cpu=cpu.get('model name'), cores=os.cpu_count(), flags=sorted(
            set(cpu.get('flags', '').split()) & ISA_FLAGS),
        versions=dict(python=platform.python_version(), mmcv=mmcv.__version__,
                      torch=torch.__version__, mmdet=mmdet.__version__,
                      mmengine=mmengine.__version__,
                      onnxruntime=onnxruntime.__version__),
        env={k: os.environ.get(k) for k in ('OMP_WAIT_POLICY',
                                            'MALLOC_MMAP_THRESHOLD_')})
