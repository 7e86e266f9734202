"""Checkpoint layouts of ReXNet and exact conversions between them.

Three layouts are understood:

* ``clovaai``: the official ImageNet files (``features.N.out.M.*``,
  ``output.*``), for ReXNet v1 and ReXNet-lite.
* ``timm``: timm's ``rexnet_*`` (``stem.*``, ``features.N.conv_dw.*``,
  ``head.fc.*``), v1 only.
* ``rexnet_det``: this package's :class:`ReXNetClassifier` (``backbone.*``,
  ``head.*``). A bare :class:`ReXNet` uses the same names without the
  ``backbone.`` prefix, and mmdet detectors store it under ``backbone.``.

Conversions are structural: the role of every tensor is read from the keys
present (a block has an expansion conv or not, SE or not), so they need no
knowledge of the width and round trips are exact.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch

StateDict = Dict[str, torch.Tensor]
FORMATS = ('rexnet_det', 'timm', 'clovaai')

_CLOVA_BLOCK = re.compile(r'^features\.(\d+)\.out\.(\d+)\.(.+)$')
_CLOVA_TOP = re.compile(r'^features\.(\d+)\.(weight|bias|running_mean|'
                        r'running_var|num_batches_tracked)$')
_TIMM_BLOCK = re.compile(r'^features\.(\d+)\.(conv_exp|conv_dw|se|conv_pwl)'
                         r'\.(.+)$')
_TIMM_PEN = re.compile(r'^features\.(\d+)\.(conv|bn)\.(.+)$')
_OWN_BLOCK = re.compile(r'^blocks\.(\d+)\.(conv_exp|conv_dw|se|conv_pwl)'
                        r'\.(.+)$')
_SE_CLOVA_TO_OWN = {'fc.0': 'fc1', 'fc.1': 'bn', 'fc.3': 'fc2'}
_SE_OWN_TO_CLOVA = {v: k for k, v in _SE_CLOVA_TO_OWN.items()}


class CheckpointFormatError(ValueError):
    """A checkpoint whose keys fit no known ReXNet layout."""


def _sample(keys, n: int = 8) -> str:
    keys = list(keys)
    more = f', ... ({len(keys)} keys)' if len(keys) > n else ''
    return ', '.join(keys[:n]) + more


def detect_format(state: StateDict) -> str:
    """Name the layout of a (prefix-free) state dict.

    Returns:
        str: ``'clovaai'``, ``'timm'``, ``'rexnet_det'`` (classifier or
        detector, keys under ``backbone.``) or ``'rexnet_det_backbone'``.
    """
    keys = list(state)
    if any(_CLOVA_BLOCK.match(k) for k in keys):
        return 'clovaai'
    if any(_TIMM_BLOCK.match(k) for k in keys):
        return 'timm'
    if any(k.startswith(('backbone.stem.', 'backbone.blocks.')) for k in keys):
        return 'rexnet_det'
    if any(k.startswith(('stem.', 'blocks.')) for k in keys):
        return 'rexnet_det_backbone'
    raise CheckpointFormatError(
        'keys match no known ReXNet layout (clovaai, timm, rexnet_det or '
        f'mmdet): {_sample(keys)}')


# --------------------------------------------------------------------------
# clovaai <-> rexnet_det
# --------------------------------------------------------------------------
def _block_roles(has_exp: bool, has_se: bool) -> List[Optional[str]]:
    """Position -> role of the modules inside a clovaai block's ``out``
    Sequential (None for parameter-free activations)."""
    roles: List[Optional[str]] = []
    if has_exp:
        roles += ['conv_exp.conv', 'conv_exp.bn', None]
    roles += ['conv_dw.conv', 'conv_dw.bn']
    # v1 with SE: SE, then ReLU6; otherwise ReLU6 straight after the dw norm.
    roles += ['se', None] if has_se else [None]
    roles += ['conv_pwl.conv', 'conv_pwl.bn']
    return roles


def _clova_block_structure(subkeys: Dict[int, List[str]]) -> Tuple[bool, bool]:
    """Infer (has_exp, has_se) from the positions used inside a block."""
    has_se = any(rest.startswith('fc.') for rests in subkeys.values()
                 for rest in rests)
    num_param_modules = len(subkeys) - int(has_se)
    if num_param_modules not in (4, 6):
        raise CheckpointFormatError(
            'clovaai block with an unexpected structure (positions '
            f'{sorted(subkeys)})')
    return num_param_modules == 6, has_se


def clovaai_to_rexnet_det(state: StateDict) -> StateDict:
    """Official clovaai layout -> rexnet_det classifier layout."""
    blocks: Dict[int, Dict[int, List[str]]] = {}
    top: Dict[int, List[str]] = {}
    head_keys = []
    for key in state:
        m = _CLOVA_BLOCK.match(key)
        if m:
            blocks.setdefault(int(m[1]), {}).setdefault(int(m[2]), []).append(
                m[3])
            continue
        m = _CLOVA_TOP.match(key)
        if m:
            top.setdefault(int(m[1]), []).append(m[2])
        elif key.startswith('output.'):
            head_keys.append(key)
        else:
            raise CheckpointFormatError(f'unknown key {key!r} in a clovaai '
                                        'checkpoint')
    if sorted(top)[:2] != [0, 1] or not blocks:
        raise CheckpointFormatError('clovaai checkpoint without stem '
                                    '(features.0 / features.1)')
    first, num_blocks = 3, len(blocks)  # features.2 is the stem activation
    if sorted(blocks) != list(range(first, first + num_blocks)):
        raise CheckpointFormatError('clovaai checkpoint with missing blocks '
                                    f'(features indices {sorted(blocks)})')
    out: StateDict = OrderedDict()
    top_names = {0: 'stem.conv', 1: 'stem.bn',
                 first + num_blocks: 'pen.conv',
                 first + num_blocks + 1: 'pen.bn'}
    for idx, names in sorted(top.items()):
        if idx not in top_names:
            raise CheckpointFormatError(f'unexpected module features.{idx} '
                                        'in a clovaai checkpoint')
        for name in names:
            out[f'backbone.{top_names[idx]}.{name}'] = state[
                f'features.{idx}.{name}']
        if idx == 1:
            for b, positions in sorted(blocks.items()):
                roles = _block_roles(*_clova_block_structure(positions))
                for pos, rests in sorted(positions.items()):
                    role = roles[pos] if pos < len(roles) else None
                    if role is None:
                        raise CheckpointFormatError(
                            f'unexpected key features.{b}.out.{pos} in a '
                            'clovaai checkpoint')
                    for rest in rests:
                        if role == 'se':
                            sub, _, leaf = rest.rpartition('.')
                            own = f'se.{_SE_CLOVA_TO_OWN[sub]}.{leaf}'
                        else:
                            own = f'{role}.{rest}'
                        out[f'backbone.blocks.{b - first}.{own}'] = state[
                            f'features.{b}.out.{pos}.{rest}']
    out.update(_clova_head_to_own(state, head_keys))
    return out


def _clova_head_to_own(state: StateDict, head_keys: List[str]) -> StateDict:
    lite = any(k.startswith('output.4.') for k in head_keys)
    names = ({'0': 'pre_logits.conv', '1': 'pre_logits.bn', '4': 'fc'}
             if lite else {'1': 'fc'})
    out: StateDict = OrderedDict()
    for key in head_keys:
        _, pos, leaf = key.split('.', 2)
        if pos not in names:
            raise CheckpointFormatError(f'unknown head key {key!r} in a '
                                        'clovaai checkpoint')
        value = state[key]
        if names[pos] == 'fc' and leaf == 'weight':
            value = value.flatten(1)  # 1x1 conv -> linear
        out[f'head.{names[pos]}.{leaf}'] = value
    return out


def rexnet_det_to_clovaai(state: StateDict) -> StateDict:
    """rexnet_det classifier layout -> official clovaai layout."""
    state = _strip(state, 'backbone.', keep_other=True)
    blocks: Dict[int, Dict[str, List[str]]] = {}
    for key in state:
        m = _OWN_BLOCK.match(key)
        if m:
            blocks.setdefault(int(m[1]), {}).setdefault(m[2], []).append(m[3])
    num_blocks = len(blocks)
    out: StateDict = OrderedDict()
    for key, value in state.items():
        m = _OWN_BLOCK.match(key)
        if m:
            b, part, rest = int(m[1]), m[2], m[3]
            roles = _block_roles('conv_exp' in blocks[b], 'se' in blocks[b])
            if part == 'se':
                sub, _, leaf = rest.partition('.')
                pos, rest = roles.index('se'), f'{_SE_OWN_TO_CLOVA[sub]}.{leaf}'
            else:
                sub, _, leaf = rest.partition('.')
                pos, rest = roles.index(f'{part}.{sub}'), leaf
            out[f'features.{b + 3}.out.{pos}.{rest}'] = value
            continue
        top = {'stem.conv': 0, 'stem.bn': 1, 'pen.conv': num_blocks + 3,
               'pen.bn': num_blocks + 4}
        module, _, leaf = key.rpartition('.')
        if module in top:
            out[f'features.{top[module]}.{leaf}'] = value
        elif key.startswith('head.'):
            lite = any(k.startswith('head.pre_logits.') for k in state)
            pos = {'head.pre_logits.conv': 0, 'head.pre_logits.bn': 1,
                   'head.fc': 4 if lite else 1}[module]
            if module == 'head.fc' and leaf == 'weight':
                value = value[:, :, None, None]
            out[f'output.{pos}.{leaf}'] = value
        else:
            raise CheckpointFormatError(f'cannot express {key!r} in the '
                                        'clovaai layout')
    return out


# --------------------------------------------------------------------------
# timm <-> rexnet_det
# --------------------------------------------------------------------------
def timm_to_rexnet_det(state: StateDict) -> StateDict:
    """timm ``rexnet_*`` layout -> rexnet_det classifier layout."""
    block_ids = {int(m[1]) for k in state if (m := _TIMM_BLOCK.match(k))}
    pen_idx = max(block_ids) + 1 if block_ids else -1
    out: StateDict = OrderedDict()
    for key, value in state.items():
        if key.startswith('stem.'):
            out[f'backbone.{key}'] = value
        elif m := _TIMM_BLOCK.match(key):
            out[f'backbone.blocks.{m[1]}.{m[2]}.{m[3]}'] = value
        elif (m := _TIMM_PEN.match(key)) and int(m[1]) == pen_idx:
            out[f'backbone.pen.{m[2]}.{m[3]}'] = value
        elif key.startswith('head.fc.'):
            out[key] = value
        else:
            raise CheckpointFormatError(f'unknown key {key!r} in a timm '
                                        'checkpoint')
    return out


def rexnet_det_to_timm(state: StateDict) -> StateDict:
    """rexnet_det classifier layout -> timm ``rexnet_*`` layout (v1 only)."""
    state = _strip(state, 'backbone.', keep_other=True)
    if any(k.startswith('head.pre_logits.') for k in state):
        raise CheckpointFormatError('timm has no ReXNet-lite; convert lite '
                                    'checkpoints to clovaai or rexnet_det')
    num_blocks = len({int(m[1]) for k in state if (m := _OWN_BLOCK.match(k))})
    out: StateDict = OrderedDict()
    for key, value in state.items():
        if key.startswith(('stem.', 'head.fc.')):
            out[key] = value
        elif m := _OWN_BLOCK.match(key):
            out[f'features.{m[1]}.{m[2]}.{m[3]}'] = value
        elif key.startswith('pen.'):
            out[f'features.{num_blocks}.{key[4:]}'] = value
        else:
            raise CheckpointFormatError(f'cannot express {key!r} in the timm '
                                        'layout')
    return out


# --------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------
def _strip(state: StateDict, prefix: str, keep_other: bool = False
           ) -> StateDict:
    out: StateDict = OrderedDict()
    for k, v in state.items():
        if k.startswith(prefix):
            out[k[len(prefix):]] = v
        elif keep_other:
            out[k] = v
    return out


def to_rexnet_det(state: StateDict) -> Tuple[StateDict, str]:
    """Convert any supported layout to the rexnet_det classifier layout.

    Returns:
        tuple: The converted state dict and the detected source format. For
        detector checkpoints only the ``backbone.*`` tensors are kept.
    """
    fmt = detect_format(state)
    if fmt == 'clovaai':
        return clovaai_to_rexnet_det(state), fmt
    if fmt == 'timm':
        return timm_to_rexnet_det(state), fmt
    if fmt == 'rexnet_det_backbone':
        return OrderedDict((f'backbone.{k}', v) for k, v in state.items()
                           if not k.startswith('head.')), fmt
    own = OrderedDict((k, v) for k, v in state.items()
                      if k.startswith(('backbone.', 'head.')))
    is_detector = any(not k.startswith(('backbone.', 'head.')) for k in state)
    if is_detector:  # mmdet detector: heads there are not ours
        own = OrderedDict((k, v) for k, v in own.items()
                          if k.startswith('backbone.'))
        fmt = 'mmdet'
    return own, fmt


def convert_state_dict(state: StateDict, to: str) -> StateDict:
    """Convert a ReXNet state dict of any supported layout to `to`."""
    if to not in FORMATS:
        raise ValueError(f'to must be one of {FORMATS}, got {to!r}')
    own, _ = to_rexnet_det(state)
    if to == 'rexnet_det':
        return own
    if to == 'timm':
        return rexnet_det_to_timm(own)
    return rexnet_det_to_clovaai(own)
