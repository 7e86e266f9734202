"""The ReXNet backbone contract: arguments, shapes, freezing, norms, cp."""
import pytest
import torch
import torch.nn as nn
from mmdet.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from rexnet_det import ReXNet, ReXNetClassifier, rexnet_arch
from rexnet_det.models import VARIANTS, get_variant

# Channels at strides 4/8/16/32 and of the penultimate conv (issue #3 and
# shared/rexnet_facts.md, derived from the official formula).
OFFICIAL_CHANNELS = {
    ('v1', 1.0): (38, 61, 128, 185, 1280),
    ('v1', 1.3): (50, 79, 167, 240, 1664),
    ('v1', 1.5): (58, 92, 193, 277, 1920),
    ('v1', 2.0): (77, 122, 257, 370, 2560),
    ('v1', 3.0): (116, 183, 386, 554, 3840),
    ('v1', 0.9): (36, 56, 117, 168, 1152),
    ('v1', 2.2): (85, 134, 283, 406, 2816),
    ('lite', 1.0): (40, 64, 128, 184, 1280),
    ('lite', 1.3): (48, 80, 160, 232, 1664),
    ('lite', 1.5): (56, 88, 192, 272, 1920),
    ('lite', 2.0): (80, 120, 248, 360, 2560),
}
V1_BLOCKS_1_0 = (16, 27, 38, 50, 61, 72, 84, 95, 106, 117, 128, 140, 151,
                 162, 174, 185)
LITE_BLOCKS_1_0 = (16, 32, 40, 48, 64, 72, 80, 96, 104, 112, 128, 136, 144,
                   160, 168, 184)

# Parameter counts with the 1000-class head. Exact ones were counted on the
# official code (issue #3; tests/fixtures/parity/index.json has them too),
# the others are the published values (M).
EXACT_PARAMS = {('v1', 1.0): 4_796_873, ('v1', 1.3): 7_557_091,
                ('lite', 1.0): 4_740_056}
PUBLISHED_PARAMS_M = {('v1', 1.5): 9.73, ('v1', 2.0): 16.37,
                      ('v1', 3.0): 34.71}


def all_taps(**kwargs):
    return ReXNet(out_indices=(0, 1, 2, 3, 4, 5), **kwargs)


def test_registered_in_mmdet():
    model = MODELS.build(dict(type='ReXNet', out_indices=(2, 3)))
    assert isinstance(model, ReXNet)
    assert model.out_channels == (61, 128)
    assert isinstance(MODELS.build(dict(type='ReXNetClassifier')),
                      ReXNetClassifier)


@pytest.mark.parametrize('kwargs, match', [
    (dict(width_mult=0), 'width_mult.*0'),
    (dict(width_mult=-1.0), 'width_mult.*-1.0'),
    (dict(depth_mult=0), 'depth_mult.*0'),
    (dict(arch='v2'), "arch.*'v2'"),
    (dict(out_indices=(1, 6)), r'out_indices.*\(1, 6\)'),
    (dict(out_indices=(-1, )), r'out_indices.*\(-1,\)'),
    (dict(out_indices=(2, 2)), r'out_indices.*\(2, 2\)'),
    (dict(out_indices=(3, 1)), r'out_indices.*\(3, 1\)'),
    (dict(out_indices=()), r'out_indices.*\(\)'),
    (dict(frozen_stages=6), 'frozen_stages.*6'),
    (dict(frozen_stages=-2), 'frozen_stages.*-2'),
    (dict(drop_path_rate=1.5), 'drop_path_rate.*1.5'),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReXNet(**kwargs)


def test_invalid_classifier_arguments():
    with pytest.raises(ValueError, match='num_classes.*0'):
        ReXNetClassifier(num_classes=0)
    with pytest.raises(ValueError, match="arch.*'big'"):
        ReXNetClassifier(arch='big')


def test_official_block_channels():
    assert tuple(b.out_channels for b in rexnet_arch(1.0).blocks) == \
        V1_BLOCKS_1_0
    assert tuple(b.out_channels
                 for b in rexnet_arch(1.0, arch='lite').blocks) == \
        LITE_BLOCKS_1_0
    # SE widths are expanded channels // 12 from block 3 on (v1 only).
    se = [b.se_channels for b in rexnet_arch(1.0).blocks]
    assert se[:3] == [0, 0, 0] and se[3:] == [19, 25, 30, 36, 42, 47, 53, 58,
                                              64, 70, 75, 81, 87]
    assert all(b.se_channels == 0 for b in rexnet_arch(1.0, arch='lite').blocks)


@pytest.mark.parametrize('arch, width', sorted(OFFICIAL_CHANNELS))
def test_official_widths_shapes(arch, width):
    model = all_taps(width_mult=width, arch=arch).eval()
    expected = OFFICIAL_CHANNELS[(arch, width)]
    stem = rexnet_arch(width, arch=arch).blocks[0].out_channels
    assert model.out_channels == (stem, *expected)
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [
        (1, stem, 32, 48), (1, expected[0], 16, 24), (1, expected[1], 8, 12),
        (1, expected[2], 4, 6), (1, expected[3], 2, 3), (1, expected[4], 2, 3)
    ]


@pytest.mark.parametrize('size', [(224, 224), (257, 321), (33, 47)])
def test_feature_info_matches_outputs(size):
    model = all_taps().eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, *size))
    assert len(model.feature_info) == len(outs) == 6
    for info, out in zip(model.feature_info, outs):
        assert out.shape[1] == info['num_chs']
        # stride = ceil division, as for any conv stack with padding k//2
        assert out.shape[2] == -(-size[0] // info['reduction'])
        assert out.shape[3] == -(-size[1] // info['reduction'])
    assert [i['reduction'] for i in model.feature_info] == [2, 4, 8, 16, 32,
                                                            32]
    assert [i['module'] for i in model.feature_info] == [
        'blocks.0', 'blocks.2', 'blocks.4', 'blocks.10', 'blocks.15', 'pen']
    modules = dict(model.named_modules())
    assert all(i['module'] in modules for i in model.feature_info)


def test_feature_info_follows_depth_mult():
    model = all_taps(depth_mult=2.0).eval()
    assert len(model.blocks) == 32
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [i['num_chs']
                                          for i in model.feature_info]


@pytest.mark.parametrize('arch, width', sorted(EXACT_PARAMS))
def test_exact_parameter_counts(arch, width):
    model = ReXNetClassifier(width_mult=width, arch=arch)
    assert sum(p.numel() for p in model.parameters()) == \
        EXACT_PARAMS[(arch, width)]


@pytest.mark.parametrize('arch, width', sorted(PUBLISHED_PARAMS_M))
def test_published_parameter_counts(arch, width):
    model = ReXNetClassifier(width_mult=width, arch=arch)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert round(params, 2) == PUBLISHED_PARAMS_M[(arch, width)]


def test_only_needed_layers_are_built():
    assert ReXNet(out_indices=(1, 2, 3, 4)).pen is None
    assert ReXNet(out_indices=(4, 5)).pen is not None
    shallow = ReXNet(out_indices=(0, 1))
    assert len(shallow.blocks) == 3  # blocks 0..2 end at tap 1
    assert len(ReXNet(out_indices=(2, )).blocks) == 5
    # every parameter gets a gradient: nothing DDP would call unused
    for indices in [(1, 2, 3, 4), (0, 1), (3, 5), (5, )]:
        model = ReXNet(out_indices=indices).train()
        outs = model(torch.rand(2, 3, 64, 64))
        sum(o.mean() for o in outs).backward()
        params = list(model.named_parameters())
        assert params
        assert [n for n, p in params if p.grad is None] == []


def _frozen_state(model):
    return [(name, m.training, [p.requires_grad for p in m.parameters()])
            for name, m in model.named_modules()]


@pytest.mark.parametrize('frozen_stages', [0, 1, 3, 4, 5])
def test_frozen_stages(frozen_stages):
    model = all_taps(frozen_stages=frozen_stages)
    tap_blocks = model.arch_spec.tap_blocks
    last_frozen = -1 if frozen_stages == 0 else tap_blocks[min(frozen_stages,
                                                               4)]

    def check():
        frozen = [model.stem] + list(model.blocks[:last_frozen + 1])
        if frozen_stages == 5:
            frozen.append(model.pen)
        free = list(model.blocks[last_frozen + 1:])
        if frozen_stages < 5:
            free.append(model.pen)
        assert frozen and (free or frozen_stages == 5)
        for module in frozen:
            assert all(not p.requires_grad for p in module.parameters())
            norms = [m for m in module.modules() if isinstance(m, _BatchNorm)]
            assert norms and all(not m.training for m in norms)
        for module in free:
            assert all(p.requires_grad for p in module.parameters())

    check()  # right after construction
    model.train()
    check()
    assert model.training


def test_frozen_stem_statistics_do_not_move():
    model = ReXNet(frozen_stages=0).train()
    before = model.stem.bn.running_mean.clone()
    model(torch.rand(2, 3, 64, 64))
    assert torch.equal(model.stem.bn.running_mean, before)
    assert not model.blocks[0].conv_dw.bn.running_mean.eq(0).all()


def test_no_freezing_by_default():
    model = ReXNet().train()
    assert all(p.requires_grad for p in model.parameters())
    assert all(m.training for m in model.modules())


def test_norm_eval():
    model = ReXNet(norm_eval=True)
    model.train()
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert norms and all(not m.training for m in norms)
    before = [m.running_mean.clone() for m in norms]
    model(torch.rand(2, 3, 64, 64))
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, norms))
    # norms still learn their affine parameters
    assert all(m.weight.requires_grad for m in norms)


def test_groupnorm_swap():
    model = all_taps(norm_cfg=dict(type='GN', num_groups=8,
                                   requires_grad=True))
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())
    gns = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert len(gns) > 50
    # channel counts like 27 or 185 get the largest divisor <= 8 as groups
    assert all(m.num_channels % m.num_groups == 0 and m.num_groups <= 8
               for m in gns)
    assert {m.num_groups for m in gns} >= {8, 1}
    outs = model.train()(torch.rand(1, 3, 64, 64))  # GN works at batch 1
    assert [o.shape[1] for o in outs] == list(model.out_channels)


def test_syncbn_builds():
    model = ReXNet(norm_cfg=dict(type='SyncBN'))
    syncs = [m for m in model.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert len(syncs) > 50
    assert not any(type(m) is nn.BatchNorm2d for m in model.modules())
    with torch.no_grad():  # eval mode needs no process group
        outs = model.eval()(torch.rand(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [38, 61, 128, 185]


def test_act_cfg_override():
    model = ReXNet(act_cfg=dict(type='ReLU'))
    assert isinstance(model.stem.activate, nn.ReLU)
    assert isinstance(model.blocks[1].conv_exp.activate, nn.ReLU)
    assert isinstance(model.blocks[1].act_dw, nn.ReLU6)
    assert isinstance(ReXNet().stem.activate, nn.SiLU)
    assert isinstance(ReXNet(arch='lite').stem.activate, nn.ReLU6)


def test_with_cp_identical_outputs_gradients_and_statistics():
    torch.manual_seed(0)
    plain = all_taps(drop_path_rate=0.0)
    cp = all_taps(with_cp=True)
    cp.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 64, 64)
    grads = []
    for model in (plain, cp):
        model.train()
        xi = x.clone().requires_grad_(True)
        outs = model(xi)
        sum((o * o).mean() for o in outs).backward()
        grads.append((outs, xi.grad, {n: p.grad for n, p in
                                      model.named_parameters()}))
    (o1, g1, p1), (o2, g2, p2) = grads
    assert all(torch.equal(a, b) for a, b in zip(o1, o2))
    assert torch.allclose(g1, g2, rtol=1e-5, atol=1e-7)
    assert p1.keys() == p2.keys() and p1
    for name in p1:
        assert torch.allclose(p1[name], p2[name], rtol=1e-5, atol=1e-7), name
    # recomputation in backward must not update BN statistics twice
    s1, s2 = plain.state_dict(), cp.state_dict()
    for key in s1:
        assert torch.equal(s1[key], s2[key]), key


def test_drop_path_only_in_training():
    model = all_taps(drop_path_rate=0.5)
    rates = [b.drop_path.drop_prob for b in model.blocks
             if hasattr(b.drop_path, 'drop_prob')]
    assert rates and rates == sorted(rates) and max(rates) == 0.5
    x = torch.rand(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
    assert all(torch.equal(i, j) for i, j in zip(a, b))
    model.train()
    torch.manual_seed(1)
    c = model(x)
    torch.manual_seed(2)
    d = model(x)
    assert any(not torch.equal(i, j) for i, j in zip(c, d))
    no_drop = all_taps().train()
    no_drop.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    e = no_drop(x)
    torch.manual_seed(2)
    f = no_drop(x)
    assert all(torch.allclose(i, j) for i, j in zip(e, f))


def test_docstring_has_args_and_example():
    doc = ReXNet.__doc__
    assert 'Args:' in doc and 'Example:' in doc
    for arg in ('width_mult', 'depth_mult', 'arch', 'out_indices',
                'frozen_stages', 'norm_eval', 'with_cp', 'norm_cfg',
                'act_cfg', 'conv_cfg', 'drop_path_rate', 'init_cfg'):
        assert f'{arg} (' in doc, arg


def test_docstring_example_runs():
    import doctest

    import rexnet_det.models.rexnet as module
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_variant_registry_is_complete():
    released = {(v.arch, v.width_mult) for v in VARIANTS.values()}
    assert released == {('v1', 1.0), ('v1', 1.3), ('v1', 1.5), ('v1', 2.0),
                        ('v1', 3.0), ('lite', 1.0), ('lite', 1.3),
                        ('lite', 1.5), ('lite', 2.0)}
    assert released <= set(OFFICIAL_CHANNELS)
    v = get_variant('rexnet-1.0x')
    # the paper's figures and timm's eval preprocessing
    assert (v.top1, v.top5, v.params_m, v.flops_g) == (77.9, 93.9, 4.8, 0.40)
    assert (v.preprocess.crop, v.preprocess.resize,
            v.preprocess.interpolation) == (224, 256, 'bicubic')
    assert v.tap_channels == (16, 38, 61, 128, 185, 1280)
    assert [w.layout for w in v.weights] == ['clovaai', 'timm']
    assert v.weights[0].filename == 'rexnetv1_1.0.pth'
    with pytest.raises(KeyError, match="'rexnet-0.7x'.*rexnet-1.0x"):
        get_variant('rexnet-0.7x')
