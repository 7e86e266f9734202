"""Distributed training on machines without CUDA.

mmengine's ``init_dist('pytorch')`` calls ``torch.cuda.set_device`` (which
raises ``AttributeError`` on a CPU build of torch) and the Runner wraps the
model in DDP with ``device_ids=[LOCAL_RANK]`` (which DDP rejects for CPU
modules). :func:`setup_cpu_distributed` starts a gloo process group itself,
so the Runner skips ``init_dist``, and asks for a DDP wrapper without device
ids. On CUDA machines it does nothing.
"""
import datetime
import os

import torch
import torch.distributed as torch_dist
from mmengine.config import Config

# Environment set by torchrun / torch.distributed.launch.
_TORCHRUN_VARS = ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')


def setup_cpu_distributed(cfg: Config, launcher: str) -> bool:
    """Prepare ``cfg`` and the process group for CPU-only DDP.

    Args:
        cfg (Config): The config the Runner will be built from; its
            ``model_wrapper_cfg`` is set when it has none.
        launcher (str): The tools' ``--launcher`` value.

    Returns:
        bool: True when a gloo process group was started here.

    Raises:
        RuntimeError: For ``--launcher pytorch`` without the torchrun
            environment, or a launcher other than ``pytorch`` on CPU.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return False
    if launcher != 'pytorch':
        raise RuntimeError(f'--launcher {launcher} needs CUDA on this '
                           'machine; on CPU use --launcher pytorch through '
                           'tools/dist_train.sh (torchrun, gloo backend)')
    missing = [v for v in _TORCHRUN_VARS if v not in os.environ]
    if missing:
        raise RuntimeError(f'--launcher pytorch needs the environment set by '
                           f'torchrun; missing {missing}. Use '
                           'tools/dist_train.sh or tools/dist_test.sh')
    if not torch_dist.is_initialized():
        timeout = cfg.get('env_cfg', {}).get('dist_cfg', {}).get(
            'timeout', 1800)
        torch_dist.init_process_group(
            backend='gloo', timeout=datetime.timedelta(seconds=timeout))
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel',
            # the Runner's default device_ids=[LOCAL_RANK] is for CUDA only
            device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    return True
