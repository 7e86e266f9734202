"""``init_cfg=dict(type='Pretrained', ...)`` loaded strictly.

mmengine's ``PretrainedInit`` loads with ``strict=False`` and would silently
half-load an official checkpoint whose key names differ from ours. Modules
using this mixin hand such an ``init_cfg`` to
:func:`rexnet_det.load_pretrained` instead, which detects the layout,
converts it and fails loudly on any mismatch.
"""
from mmengine.model import BaseModule


class StrictPretrainedMixin:
    """Mixin for :class:`BaseModule` subclasses (put it first in the bases)."""

    def init_weights(self) -> None:
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            from ..checkpoint import load_pretrained
            load_pretrained(self, cfg['checkpoint'], prefix=cfg.get('prefix'),
                            map_location=cfg.get('map_location', 'cpu'))
            self._is_init = True
            return
        BaseModule.init_weights(self)
