"""``init_cfg=dict(type='Pretrained', ...)`` loaded strictly.

mmengine's ``PretrainedInit`` loads with ``strict=False`` and would silently
half-load an official checkpoint whose key names differ from ours. Modules
using :class:`StrictPretrainedMixin` run every ``Pretrained`` entry of their
``init_cfg`` (a dict or a list) through the weight initializer registered
as ``ReXNetPretrained`` in mmdet's ``WEIGHT_INITIALIZERS`` (by
:mod:`rexnet_det.checkpoint`), which detects the checkpoint's layout,
converts it and fails loudly on any mismatch. The model floor names that
initializer through the registry and never imports the checkpoint floor.
"""
from typing import List

from mmengine.model import BaseModule, PretrainedInit, initialize
from torch import Tensor

from ..utils.errors import CheckpointMismatchError
from ..utils.strict_state import compare_state
from .variants import describe_state

#: Key our loader adds to a state dict's ``_metadata`` entries so that load
#: errors can name the file.
SOURCE_KEY = 'rexnet_det_source'
#: Registry name of the strict initializer (scoped, so it is found whatever
#: the default scope).
STRICT_INIT = 'mmdet.ReXNetPretrained'
_PRETRAINED_TYPES = ('Pretrained', 'ReXNetPretrained', STRICT_INIT,
                     PretrainedInit)


def _init_cfgs(module: BaseModule) -> List[dict]:
    cfg = module.init_cfg
    if cfg is None:
        return []
    cfgs = [cfg] if isinstance(cfg, dict) else list(cfg)
    for c in cfgs:
        if not isinstance(c, dict) or 'type' not in c:
            raise ValueError(f'{type(module).__name__}: every init_cfg entry '
                             f'must be a dict with a "type", got {c!r}')
    return cfgs


class StrictPretrainedMixin:
    """Mixin for :class:`BaseModule` subclasses (put it first in the bases).

    A backbone using it also refuses, before copying anything, a state dict
    whose entries for it do not fit
    (:func:`~rexnet_det.utils.strict_state.compare_state`: other shapes,
    as from another width or arch, other dtype classes, or entries that are
    not dense tensors), even when it is loaded with ``strict=False`` as
    mmengine's own ``Pretrained`` init of a whole detector does: otherwise
    the tensors that happen to fit would load and the rest would keep their
    random init. Keys missing here are left to the caller's ``strict``.
    """

    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        # A wrapper (the classifier) leaves the check to its ReXNet, so a
        # head of another num_classes can still be skipped as usual.
        own = {} if hasattr(self, 'backbone') else self.state_dict()
        report = compare_state(
            own, {k[len(prefix):]: v for k, v in state_dict.items()
                  if k.startswith(prefix) and k[len(prefix):] in own},
            allow_nonfinite=True,  # values are the caller's concern
            ignore_missing=lambda k: True, name=lambda k: prefix + k)
        if report:
            source = (local_metadata or {}).get(SOURCE_KEY, 'the checkpoint')
            held = ''
            if report.mismatched:
                held = ' it holds ' + describe_state({
                    'backbone.' + k[len(prefix):]: v
                    for k, v in state_dict.items()
                    if k.startswith(prefix) and isinstance(v, Tensor)
                }) + '.'
            raise CheckpointMismatchError(
                f'{source} does not fit {type(self).__name__} at '
                f"'{prefix}' ({self.arch_spec.name});{held} Nothing was "
                'loaded. ' + ' | '.join(report.problems()))
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def init_weights(self) -> None:
        """Initialise as mmengine does, but load every ``Pretrained`` entry
        of ``init_cfg`` strictly, after all other initialisation."""
        cfgs = _init_cfgs(self)
        pretrained = [c for c in cfgs if c['type'] in _PRETRAINED_TYPES]
        if not pretrained:
            return BaseModule.init_weights(self)
        for cfg in pretrained:
            if not cfg.get('checkpoint'):
                raise ValueError(
                    f'{type(self).__name__}: init_cfg {dict(cfg)!r} has no '
                    "'checkpoint'; set init_cfg=dict(type='Pretrained', "
                    "checkpoint='path, URL or open-mmlab://...')")
        original = self.init_cfg
        self.init_cfg = [c for c in cfgs if c not in pretrained] or None
        try:
            BaseModule.init_weights(self)  # other entries and children
        finally:
            self.init_cfg = original
        for cfg in pretrained:
            initialize(self, dict(cfg, type=STRICT_INIT))
        self._is_init = True
