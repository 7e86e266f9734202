"""The strict ``Pretrained`` initializer of ReXNet models.

Registered as ``ReXNetPretrained`` in mmdet's ``WEIGHT_INITIALIZERS``;
:class:`~rexnet_det.models.pretrained_init.StrictPretrainedMixin` sends
every ``init_cfg=dict(type='Pretrained', ...)`` entry here.
"""
from typing import Optional

from mmdet.registry import WEIGHT_INITIALIZERS
from mmengine.logging import print_log
from mmengine.model.weight_init import update_init_info

from .loader import load_pretrained


@WEIGHT_INITIALIZERS.register_module(name='ReXNetPretrained')
class StrictPretrainedInit:
    """Load a checkpoint of any supported layout strictly.

    Args:
        checkpoint (str): Path, URL or ``scheme://`` name.
        prefix (str, optional): Use only the keys under this prefix.
        map_location (str): Default: ``'cpu'``.
        backend_args (dict, optional): mmengine file backend to read with.
        allow_nonfinite (bool): Load NaN / Inf weights too. Default: False.
    """

    def __init__(self, checkpoint: str, prefix: Optional[str] = None,
                 map_location: str = 'cpu',
                 backend_args: Optional[dict] = None,
                 allow_nonfinite: bool = False) -> None:
        self.checkpoint = checkpoint
        self.prefix = prefix
        self.map_location = map_location
        self.backend_args = backend_args
        self.allow_nonfinite = allow_nonfinite

    def __call__(self, module) -> None:
        info = load_pretrained(module, self.checkpoint, prefix=self.prefix,
                               map_location=self.map_location,
                               backend_args=self.backend_args,
                               allow_nonfinite=self.allow_nonfinite)
        print_log(f'{type(module).__name__}: loaded {len(info["loaded"])} '
                  f'tensors strictly from {self.checkpoint} '
                  f'({info["format"]} layout)', logger='current')
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=f'{type(self).__name__}: '
                             f'load from {self.checkpoint}')
