"""Checkpoint layouts, strict loading through every path, conversion tool."""
import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS

from rexnet_det import (CheckpointMismatchError, ReXNet, ReXNetClassifier,
                        convert_state_dict, load_pretrained)
from rexnet_det.checkpoint import detect_format

from .fixtures.synthetic_weights import synthetic_state_dict
from .conftest import load_tool

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def official_like(width=1.0, arch='v1', seed=7):
    """A checkpoint in the official clovaai layout, built without the
    reference code: our classifier's tensors renamed by our converter are
    checked against the exact clovaai key list in the parity fixtures."""
    model = ReXNetClassifier(width_mult=width, arch=arch)
    keys = [(k, v.shape) for k, v in convert_state_dict(
        model.state_dict(), 'clovaai').items()]
    return synthetic_state_dict(seed, keys)


def assert_backbone_equals(model, canonical):
    """Every backbone tensor equals the checkpoint's, tensor by tensor."""
    backbone = model.backbone if isinstance(model, ReXNetClassifier) else model
    checked = 0
    for key, value in backbone.state_dict().items():
        expected = canonical[f'backbone.{key}']
        assert torch.equal(value, expected), key
        checked += 1
    assert checked == len(backbone.state_dict()) > 300


def test_clovaai_key_list_matches_official():
    import json
    with open(osp.join(ROOT, 'tests/fixtures/parity/index.json')) as f:
        index = json.load(f)
    for name, width, arch in [('clovaai_v1_1.0', 1.0, 'v1'),
                              ('clovaai_v1_1.3', 1.3, 'v1'),
                              ('clovaai_lite_1.0', 1.0, 'lite')]:
        official = [(k, list(s)) for k, s in index['models'][name]['keys']]
        ours = [(k, list(v.shape)) for k, v in official_like(
            width, arch).items()]
        assert sorted(ours) == sorted(official) and ours


@pytest.mark.parametrize('layout', ['clovaai', 'timm', 'rexnet_det'])
def test_detect_format(layout):
    state = convert_state_dict(official_like(), layout)
    assert detect_format(state) == layout


@pytest.mark.parametrize('src', ['clovaai', 'timm', 'rexnet_det'])
@pytest.mark.parametrize('dst', ['clovaai', 'timm', 'rexnet_det'])
def test_round_trips_are_exact(src, dst):
    original = convert_state_dict(official_like(), src)
    back = convert_state_dict(convert_state_dict(original, dst), src)
    assert list(back) == list(original) and len(back) > 300
    assert all(torch.equal(back[k], original[k]) for k in original)


def test_lite_round_trip_and_no_timm_lite():
    original = official_like(arch='lite')
    own = convert_state_dict(original, 'rexnet_det')
    assert 'head.pre_logits.conv.weight' in own
    back = convert_state_dict(own, 'clovaai')
    assert list(back) == list(original)
    assert all(torch.equal(back[k], original[k]) for k in original)
    with pytest.raises(ValueError, match='timm has no ReXNet-lite'):
        convert_state_dict(original, 'timm')


def _detector_checkpoint(canonical):
    state = {k: v for k, v in canonical.items() if k.startswith('backbone.')}
    state['neck.lateral_convs.0.conv.weight'] = torch.zeros(8, 38, 1, 1)
    state['bbox_head.cls.weight'] = torch.zeros(3, 8)
    return dict(state_dict=state, meta=dict(epoch=1))


def checkpoint_in(layout, canonical):
    if layout == 'mmdet':
        return _detector_checkpoint(canonical)
    if layout == 'rexnet_det':
        return dict(state_dict=dict(canonical))
    return convert_state_dict(canonical, layout)


LAYOUTS = ['clovaai', 'timm', 'rexnet_det', 'mmdet']


@pytest.mark.parametrize('layout', LAYOUTS)
@pytest.mark.parametrize('out_indices', [(1, 2, 3, 4), (2, 5), (0, )])
def test_load_pretrained_every_layout(layout, out_indices, tmp_path):
    canonical = convert_state_dict(official_like(), 'rexnet_det')
    path = tmp_path / 'ckpt.pth'
    torch.save(checkpoint_in(layout, canonical), path)
    model = ReXNet(out_indices=out_indices)
    info = load_pretrained(model, str(path))
    expected_format = {'rexnet_det': 'rexnet_det'}.get(layout, layout)
    assert info['format'] == expected_format
    assert_backbone_equals(model, canonical) if len(model.blocks) == 16 \
        else _assert_partial(model, canonical)


def _assert_partial(model, canonical):
    state = model.state_dict()
    assert state
    for key, value in state.items():
        assert torch.equal(value, canonical[f'backbone.{key}']), key


@pytest.mark.parametrize('layout', LAYOUTS)
def test_init_cfg_pretrained_every_layout(layout, tmp_path):
    canonical = convert_state_dict(official_like(), 'rexnet_det')
    path = tmp_path / f'{layout}.pth'
    torch.save(checkpoint_in(layout, canonical), path)
    model = MODELS.build(dict(type='ReXNet', out_indices=(1, 2, 3, 4, 5),
                              init_cfg=dict(type='Pretrained',
                                            checkpoint=str(path))))
    model.init_weights()
    assert_backbone_equals(model, canonical)


@pytest.mark.parametrize('layout', ['clovaai', 'timm', 'rexnet_det'])
def test_classifier_loads_head_too(layout, tmp_path):
    canonical = convert_state_dict(official_like(), 'rexnet_det')
    path = tmp_path / 'c.pth'
    torch.save(checkpoint_in(layout, canonical), path)
    for model in (ReXNetClassifier(),
                  ReXNetClassifier(init_cfg=dict(type='Pretrained',
                                                 checkpoint=str(path)))):
        if model.init_cfg:
            model.init_weights()
        else:
            load_pretrained(model, str(path))
        assert_backbone_equals(model, canonical)
        assert torch.equal(model.head.fc.weight, canonical['head.fc.weight'])
        assert torch.equal(model.head.fc.bias, canonical['head.fc.bias'])


def test_prefix_selects_sub_state(tmp_path):
    canonical = convert_state_dict(official_like(), 'rexnet_det')
    wrapped = {f'teacher.{k}': v for k, v in convert_state_dict(
        canonical, 'timm').items()}
    path = tmp_path / 'w.pth'
    torch.save(wrapped, path)
    model = ReXNet(init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                 prefix='teacher.'))
    model.init_weights()
    assert_backbone_equals(model, canonical)


def test_missing_and_unexpected_keys_are_listed():
    canonical = convert_state_dict(official_like(), 'rexnet_det')
    broken = dict(canonical)
    del broken['backbone.blocks.3.se.fc1.weight']
    broken['backbone.blocks.3.extra.weight'] = torch.zeros(1)
    model = ReXNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as err:
        load_pretrained(model, broken)
    msg = str(err.value)
    assert 'missing keys (1): blocks.* 1; blocks.3.se.fc1.weight' in msg
    assert 'unexpected keys (1): blocks.* 1; blocks.3.extra.weight' in msg
    # nothing was loaded
    assert all(torch.equal(before[k], v) for k, v in
               model.state_dict().items())


def test_shape_mismatch_is_listed():
    canonical = convert_state_dict(official_like(), 'rexnet_det')
    canonical['backbone.blocks.5.conv_dw.bn.weight'] = torch.ones(7)
    with pytest.raises(CheckpointMismatchError,
                       match=r'blocks.5.conv_dw.bn.weight: checkpoint \(7,\) '
                       r'vs model \(366,\)'):
        load_pretrained(ReXNet(), canonical)


@pytest.mark.parametrize('ckpt, model_kwargs, names', [
    ((1.3, 'v1'), dict(width_mult=1.0), ('ReXNet 1.3x', 'ReXNet 1.0x')),
    ((1.0, 'lite'), dict(width_mult=1.0), ('ReXNet-lite 1.0x',
                                           'ReXNet 1.0x')),
    ((1.0, 'v1'), dict(width_mult=1.5), ('ReXNet 1.0x', 'ReXNet 1.5x')),
])
def test_other_width_or_arch_names_both(ckpt, model_kwargs, names):
    state = official_like(*ckpt)
    with pytest.raises(CheckpointMismatchError) as err:
        load_pretrained(ReXNet(**model_kwargs), state)
    msg = str(err.value)
    assert f'holds {names[0]}' in msg and f'model is {names[1]}' in msg


def test_non_strict_reports_problems():
    canonical = convert_state_dict(official_like(), 'rexnet_det')
    del canonical['backbone.stem.conv.weight']
    model = ReXNet()
    info = load_pretrained(model, canonical, strict=False)
    assert info['missing'] == ['stem.conv.weight']
    assert len(info['loaded']) == len(model.state_dict()) - 1


def test_convert_tool_round_trip(tmp_path, capsys):
    src = tmp_path / 'rexnetv1_1.0.pth'
    torch.save(official_like(), src)
    tool = load_tool('convert_checkpoint.py')
    steps = [(src, 'own.pth', 'rexnet_det'), ('own.pth', 'timm.pth', 'timm'),
             ('timm.pth', 'back.pth', 'clovaai')]
    for a, b, fmt in steps:
        tool.main([str(tmp_path / a), str(tmp_path / b), '--to', fmt])
        assert f'-> {tmp_path / b} ({fmt}' in capsys.readouterr().out
    original = torch.load(src, weights_only=True)
    back = torch.load(tmp_path / 'back.pth', weights_only=True)
    assert list(back) == list(original) and original
    assert all(torch.equal(back[k], original[k]) for k in original)
    # own format loads into the classifier; clovaai keys are gone
    own = torch.load(tmp_path / 'own.pth', weights_only=True)
    assert own['meta']['converted_from'] == 'clovaai'
    load_pretrained(ReXNetClassifier(), str(tmp_path / 'own.pth'))


def test_convert_tool_errors(tmp_path):
    tool = load_tool('convert_checkpoint.py')
    missing = tmp_path / 'nope.pth'
    with pytest.raises(SystemExit) as exc:
        tool.main([str(missing), str(tmp_path / 'out.pth'), '--to', 'timm'])
    assert str(exc.value.code) == f'error: checkpoint file not found: ' \
        f'{missing}'
    other = tmp_path / 'other.pth'
    torch.save({'fc.weight': torch.zeros(2, 2)}, other)
    with pytest.raises(SystemExit, match='no known ReXNet layout'):
        tool.main([str(other), str(tmp_path / 'out.pth'), '--to', 'timm'])
    assert not (tmp_path / 'out.pth').exists()
