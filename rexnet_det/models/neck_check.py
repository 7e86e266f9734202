"""Check that a detector's neck takes the channels its backbone gives.

A wrong ``neck.in_channels`` otherwise surfaces as a conv error deep in the
first forward pass ("expected input[2, 61, 8, 8] to have 38 channels").
"""
from typing import Any, Optional, Tuple, Union

import torch.nn as nn
from mmengine.config import Config, ConfigDict
from mmengine.registry import DefaultScope


def _neck_in_channels(neck: Any) -> Tuple[Optional[Tuple[int, ...]], bool]:
    """The neck's input channels, and whether only the last one is known."""
    if isinstance(neck, dict):
        value = neck.get('in_channels')
    else:
        value = getattr(neck, 'in_channels', None)
        if value is None and len(getattr(neck, 'extra_layers', ())):
            # SSDNeck keeps no in_channels; its first extra layer reads the
            # last backbone map, the only one it convolves.
            first = next((m for m in neck.extra_layers[0].modules()
                          if isinstance(m, nn.Conv2d)), None)
            if first is not None:
                return (first.in_channels, ), True
    if value is None:
        return None, False
    return ((int(value), ) if isinstance(value, int) else tuple(
        int(v) for v in value)), False


def _describe_taps(backbone: nn.Module) -> str:
    taps = []
    for i, ch in zip(backbone.out_indices, backbone.out_channels):
        reduction = backbone.feature_info[i]['reduction']
        taps.append(f'tap {i}: {ch} ch (stride {reduction})')
    return ', '.join(taps)


def check_neck_channels(
        cfg_or_model: Union[Config, ConfigDict, dict, nn.Module]
) -> Tuple[int, ...]:
    """Raise if the neck's ``in_channels`` differ from the backbone's taps.

    Args:
        cfg_or_model (Config | dict | nn.Module): A full config (with
            ``model``), a model config, or a built detector. For configs
            only the backbone is built (without loading weights).

    Returns:
        tuple[int]: The backbone's ``out_channels``; empty when there is
        nothing to check (no neck, or a backbone without ``out_channels``).

    Raises:
        ValueError: The channels differ; the message lists every tap's
            channels and stride and the ``in_channels`` to use.
    """
    if isinstance(cfg_or_model, nn.Module):
        backbone = getattr(cfg_or_model, 'backbone', None)
        neck = getattr(cfg_or_model, 'neck', None)
        neck_type = type(neck).__name__
    else:
        model_cfg = cfg_or_model.get('model', cfg_or_model)
        neck = model_cfg.get('neck')
        if isinstance(neck, (list, tuple)):  # stacked necks
            neck = neck[0] if neck else None
        if neck is None or 'backbone' not in model_cfg:
            return ()
        neck_type = neck.get('type', 'neck')
        from mmdet.registry import MODELS
        backbone_cfg = dict(model_cfg['backbone'])
        backbone_cfg.pop('init_cfg', None)
        scope = cfg_or_model.get('default_scope', 'mmdet')
        with DefaultScope.overwrite_default_scope(scope):
            backbone = MODELS.build(backbone_cfg)
    if neck is None or not hasattr(backbone, 'out_channels'):
        return ()
    if isinstance(neck, nn.Sequential):  # stacked necks
        neck = neck[0]
    expected = tuple(backbone.out_channels)
    got, last_only = _neck_in_channels(neck)
    if got is None:
        return expected
    if got != (expected[-1:] if last_only else expected):
        name = getattr(getattr(backbone, 'arch_spec', None), 'name',
                       type(backbone).__name__)
        raise ValueError(
            f'neck {neck_type} in_channels {list(got)}'
            f'{" (last map)" if last_only else ""} do not match the '
            f'backbone {name} with out_indices '
            f'{tuple(backbone.out_indices)}: {_describe_taps(backbone)}. '
            f'Set neck.in_channels={list(expected)}')
    return expected

