"""``init_cfg=dict(type='Pretrained', ...)`` loaded strictly.

mmengine's ``PretrainedInit`` loads with ``strict=False`` and would silently
half-load an official checkpoint whose key names differ from ours. Modules
using this mixin hand such an ``init_cfg`` to
:func:`rexnet_det.load_pretrained` instead, which detects the layout,
converts it and fails loudly on any mismatch.
"""
from mmengine.model import BaseModule

#: Key our mmengine loader adds to a state dict's ``_metadata`` entries so
#: that load errors can name the file.
SOURCE_KEY = 'rexnet_det_source'


class StrictPretrainedMixin:
    """Mixin for :class:`BaseModule` subclasses (put it first in the bases).

    A backbone using it also refuses, before copying anything, a state dict
    whose tensors for it have other shapes (another width or arch), even
    when it is loaded with ``strict=False`` as mmengine's ``load_from``,
    ``--resume`` and ``tools/test.py`` do: otherwise the tensors that happen
    to fit (e.g. the FPN output convs of a detector) would load and the rest
    would keep their random init.
    """

    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        # A wrapper (the classifier) leaves the check to its ReXNet, so a
        # head of another num_classes can still be skipped as usual.
        own = {} if hasattr(self, 'backbone') else self.state_dict()
        mismatched = [
            f'{prefix}{k}: checkpoint {tuple(state_dict[prefix + k].shape)}'
            f' vs model {tuple(v.shape)}' for k, v in own.items()
            if prefix + k in state_dict and
            state_dict[prefix + k].shape != v.shape
        ]
        if mismatched:
            from ..checkpoint.loader import CheckpointMismatchError, _describe
            ckpt_name = _describe({
                'backbone.' + k[len(prefix):]: v
                for k, v in state_dict.items() if k.startswith(prefix)
            })
            source = (local_metadata or {}).get(SOURCE_KEY, 'the checkpoint')
            raise CheckpointMismatchError(
                f'{source} does not fit {type(self).__name__} at '
                f"'{prefix}' ({self.arch_spec.name}); it holds "
                f'{ckpt_name}. Nothing was loaded. Shape mismatch '
                f'({len(mismatched)}): {"; ".join(mismatched[:3])}'
                f'{"; ..." if len(mismatched) > 3 else ""}')
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def init_weights(self) -> None:
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            from ..checkpoint import load_pretrained
            load_pretrained(self, cfg['checkpoint'], prefix=cfg.get('prefix'),
                            map_location=cfg.get('map_location', 'cpu'))
            self._is_init = True
            return
        BaseModule.init_weights(self)
