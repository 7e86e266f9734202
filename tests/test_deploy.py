"""Fused inference form, ONNX export, TorchScript tracing, torch.compile."""
import copy
import importlib.util
import os.path as osp

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from rexnet_det import ReXNet, ReXNetClassifier
from rexnet_det.checkpoint import (CheckpointError, fused_checkpoint,
                                   load_fused, load_model, safe_torch_load)
from rexnet_det.deploy.onnx import OrtRunner, export_onnx
from rexnet_det.models.utils import fold_bn_into_conv, fuse_model, is_fused

from .fixtures.synthetic_weights import (relative_error, synthetic_input,
                                         synthetic_state_dict)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
ALL_TAPS = (0, 1, 2, 3, 4, 5)
FUSE_TOLERANCE = 1e-5
ONNX_TOLERANCE = 1e-4


def load_tool(name):
    """Import tools/deploy/<name>.py (the tools are scripts, not a
    package)."""
    path = osp.join(ROOT, 'tools', 'deploy', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'_tool_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synthetic(model, seed=3):
    """`model` in eval mode with non-trivial weights and BN statistics."""
    state = synthetic_state_dict(seed, [(k, v.shape) for k, v in
                                        model.state_dict().items()])
    model.load_state_dict(state)
    return model.eval()


def build(arch, kind):
    if kind == 'classifier':
        return synthetic(ReXNetClassifier(arch=arch))
    return synthetic(ReXNet(arch=arch, out_indices=ALL_TAPS))


def as_tuple(out):
    return out if isinstance(out, tuple) else (out, )


def run(model, x):
    with torch.no_grad():
        return as_tuple(model(x))


X = synthetic_input(11, (2, 3, 96, 128))


@pytest.mark.parametrize('channels_last', [True, False])
@pytest.mark.parametrize('arch', ['v1', 'lite'])
@pytest.mark.parametrize('kind', ['classifier', 'backbone'])
def test_fused_outputs_match_unfused(arch, kind, channels_last):
    model = build(arch, kind)
    fused = copy.deepcopy(model).fuse(channels_last=channels_last)
    expected, actual = run(model, X), run(fused, X)
    assert len(actual) == len(expected) == (1 if kind == 'classifier'
                                            else 6)
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a.shape == e.shape
        if (arch, kind, i) == ('lite', 'backbone', 5):
            # ReLU6 clamps the lite penultimate conv at 6 while its
            # pre-activations reach ~55 with these weights, so float32
            # rounding (which depends on kernel choice and thread count)
            # can move this tap by more than 1e-5 relative. The folding
            # itself is checked in float64, where rounding is negligible,
            # and the float32 fused model is held to the parity suite's 1e-4.
            m64 = copy.deepcopy(model).double()
            f64 = copy.deepcopy(m64).fuse(channels_last=channels_last)
            x64 = X.double()
            assert relative_error(run(f64, x64)[5],
                                  run(m64, x64)[5]) < FUSE_TOLERANCE
            assert relative_error(a, e) < ONNX_TOLERANCE
        else:
            assert relative_error(a, e) < FUSE_TOLERANCE, (arch, kind, i)
    if channels_last:
        assert all(a.is_contiguous(memory_format=torch.channels_last)
                   for a in actual if a.dim() == 4)


@pytest.mark.parametrize('groups, bias', [(1, False), (8, False), (1, True)])
def test_fold_bn_into_conv_is_exact_in_float64(groups, bias):
    conv = nn.Conv2d(16, 24, 3, stride=2, padding=1, groups=groups,
                     bias=bias).double()
    bn = nn.BatchNorm2d(24, eps=1e-3).double()
    state = synthetic_state_dict(7, [(k, v.shape) for k, v in
                                     bn.state_dict().items()])
    bn.load_state_dict(state)
    bn.eval()
    fused = fold_bn_into_conv(conv, bn)
    x = synthetic_input(3, (2, 16, 9, 11)).double()
    with torch.no_grad():
        assert relative_error(fused(x), bn(conv(x))) < 1e-13
    assert fused.bias is not None and fused.groups == groups


def test_fuse_folds_every_norm_and_keeps_the_original_intact():
    model = build('v1', 'classifier')
    reference = copy.deepcopy(model.state_dict())
    fused = copy.deepcopy(model).fuse()
    assert is_fused(fused) and not is_fused(model)
    assert not [m for m in fused.modules() if isinstance(m, _BatchNorm)]
    convs = [m for m in fused.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 75  # 49 ConvModules + 13 SE modules x (fc1, fc2)
    assert all(c.bias is not None for c in convs)
    assert not any(p.requires_grad for p in fused.parameters())
    assert not any(k.endswith(('running_mean', 'running_var'))
                   for k in fused.state_dict())
    se_fc1 = fused.backbone.blocks[3].se.fc1
    assert se_fc1.weight.shape == (19, 228, 1, 1)
    # the unfused model is untouched
    assert all(torch.equal(v, model.state_dict()[k])
               for k, v in reference.items())


def test_fuse_needs_eval_mode():
    model = ReXNet().train()
    with pytest.raises(RuntimeError, match=r'fuse\(\) needs eval mode'):
        model.fuse()
    assert not is_fused(model)
    assert any(isinstance(m, _BatchNorm) for m in model.modules())


def test_fuse_is_idempotent_and_inference_only():
    model = build('v1', 'backbone')
    fused = model.fuse()
    assert fused is model
    before = {k: v.clone() for k, v in fused.state_dict().items()}
    out = run(fused, X)
    assert fused.fuse() is fused and fuse_model(fused) is fused
    assert all(torch.equal(v, fused.state_dict()[k])
               for k, v in before.items())
    again = run(fused, X)
    assert len(again) == len(out) == 6
    assert all(torch.equal(a, b) for a, b in zip(again, out))
    fused.train()
    with pytest.raises(RuntimeError, match='fused for inference'):
        fused(X)


def test_fuse_rejects_unfoldable_norms():
    model = ReXNet(norm_cfg=dict(type='GN', num_groups=8)).eval()
    with pytest.raises(TypeError, match='GroupNorm at stem'):
        model.fuse()
    # one unfoldable norm deep inside: nothing is changed before the error
    model = build('v1', 'backbone')
    before = run(model, X)
    model.blocks[3].se.bn = nn.GroupNorm(1, 19).eval()
    expected = run(model, X)
    with pytest.raises(TypeError, match='GroupNorm at blocks.3.se.fc1'):
        model.fuse()
    assert not is_fused(model) and model.stem.conv.bias is None
    after = run(model, X)
    assert len(after) == len(expected) == len(before) == 6
    assert all(torch.equal(a, e) for a, e in zip(after, expected))
    assert not all(torch.equal(a, b) for a, b in zip(expected, before))
    lone_bn = nn.Sequential(nn.ReLU(), nn.BatchNorm2d(3)).eval()
    with pytest.raises(TypeError, match=r"BatchNorm layers \['1'\] do not "
                       'directly follow a conv'):
        fuse_model(lone_bn)
    assert not is_fused(lone_bn)


def test_fused_checkpoint_round_trip(tmp_path):
    model = build('lite', 'classifier').fuse()
    path = str(tmp_path / 'fused.pth')
    torch.save(fused_checkpoint(model), path)
    assert safe_torch_load(path)['meta']['fused'] is True
    loaded, meta = load_fused(path)
    assert (meta['arch'], meta['width_mult'], meta['classifier']) == \
        ('lite', 1.0, True)
    assert is_fused(loaded)
    assert torch.equal(run(loaded, X)[0], run(model, X)[0])
    with pytest.raises(ValueError, match='expects a fused ReXNet'):
        fused_checkpoint(build('v1', 'backbone'))
    torch.save({'state_dict': model.state_dict()}, str(tmp_path / 'x.pth'))
    with pytest.raises(CheckpointError,
                       match='x.pth is not a fused checkpoint'):
        load_fused(str(tmp_path / 'x.pth'))


def test_fused_meta_must_describe_the_files_tensors(tmp_path):
    """A fused file's meta says how big a model to build; a small file that
    declares a huge one is refused, naming the file and the value, before
    anything of that size is allocated (the model is first built on the
    meta device)."""
    from rexnet_det.checkpoint import CheckpointMismatchError
    tool = load_tool('export_onnx')
    meta = dict(fused=True, arch='v1', width_mult=1.0, depth_mult=1.0,
                classifier=True, out_indices=[5], channels_last=False,
                num_classes=500000)
    tiny = str(tmp_path / 'tiny.pth')
    torch.save(dict(state_dict={'head.fc.bias': torch.zeros(8)}, meta=meta),
               tiny)
    assert osp.getsize(tiny) < 4096
    with pytest.raises(SystemExit) as exc:
        tool.main([tiny, str(tmp_path / 'x.onnx')])
    message = exc.value.code
    assert message.startswith(f'error: {tiny}: its meta ') and \
        'num_classes=500000' in message and '\n' not in message
    assert 'declares 16 blocks, but the file holds only 1 tensors' in message
    # every tensor present, but the meta claims 500000 classes
    model = build('lite', 'classifier').fuse()
    payload = fused_checkpoint(model)
    payload['meta']['num_classes'] = 500000
    forged = str(tmp_path / 'forged.pth')
    torch.save(payload, forged)
    with pytest.raises(CheckpointMismatchError, match=(
            r'forged.pth: its meta \(.*num_classes=500000\) describes '
            r'head.fc.bias as \[500000\], but the file holds \[1000\]; '
            r'nothing was built')):
        load_fused(forged)
    for key, value, problem in (('num_classes', 'many', 'num_classes'),
                                ('width_mult', 'wide', 'width_mult must '
                                 'be a finite number > 0'),
                                ('arch', None, 'arch must be one of')):
        payload['meta'] = dict(fused_checkpoint(model)['meta'],
                               **{key: value})
        torch.save(payload, forged)
        with pytest.raises(CheckpointError, match=problem):
            load_fused(forged)
    del payload['meta']['channels_last']
    torch.save(payload, forged)
    with pytest.raises(CheckpointError,
                       match=r"meta lacks \['channels_last'\]"):
        load_model(forged)


def test_load_model_infers_the_variant(tmp_path):
    from rexnet_det.checkpoint import (CheckpointMismatchError,
                                       convert_state_dict)
    classifier = ReXNetClassifier(width_mult=1.3, arch='lite')
    clova = str(tmp_path / 'clova.pth')
    torch.save(convert_state_dict(classifier.state_dict(), 'clovaai'), clova)
    model, spec, source = load_model(clova)
    assert (spec.name, source) == ('rexnet-lite-1.3x', f'checkpoint {clova}')
    assert torch.equal(model.head.fc.weight, classifier.head.fc.weight)
    # an mmdet detector whose backbone stops at tap 4 (no penultimate conv)
    backbone = ReXNet(out_indices=(1, 2, 3, 4))
    state = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    state['neck.lateral_convs.0.conv.weight'] = torch.zeros(256, 38, 1, 1)
    detector = str(tmp_path / 'det.pth')
    torch.save({'state_dict': state}, detector)
    model, spec, _ = load_model(detector)
    assert spec.backbone and model.out_indices == (0, 1, 2, 3, 4)
    partial = {k: v for k, v in state.items() if '.blocks.15.' not in k}
    torch.save(partial, str(tmp_path / 'partial.pth'))
    with pytest.raises(CheckpointMismatchError, match='15 blocks'):
        load_model(str(tmp_path / 'partial.pth'))


def test_fuse_tool(tmp_path, capsys):
    tool = load_tool('fuse')
    out = str(tmp_path / 'f.pth')
    error = tool.main(['rexnet-lite-1.0x-backbone', out, '--shape', '64',
                       '64'])
    assert error < FUSE_TOLERANCE
    model, spec, source = load_model(out)
    assert source == f'fused checkpoint {out}' and spec.backbone
    assert is_fused(model) and model.out_indices == ALL_TAPS
    assert 'wrote' in capsys.readouterr().out
    with pytest.raises(SystemExit, match='exists; pass --force'):
        tool.main(['rexnet-1.0x', out])
    with pytest.raises(SystemExit, match="unknown model name 'rexnet-big'"):
        tool.main(['rexnet-big', str(tmp_path / 'g.pth')])
    with pytest.raises(SystemExit, match="'missing/x.pth' does not exist"):
        tool.main(['missing/x.pth', str(tmp_path / 'g.pth')])


def test_onnx_backbone_all_taps_matches_pytorch(tmp_path):
    model = build('v1', 'backbone')
    path = export_onnx(model, str(tmp_path / 'backbone.onnx'),
                       input_shape=(1, 3, 64, 64))
    runner = OrtRunner(path, threads=1)
    names = [o.name for o in runner.session.get_outputs()]
    assert names == [f'tap{i}' for i in ALL_TAPS]
    # dynamic batch and size: another shape than the traced one
    actual, expected = runner(X), run(model, X)
    assert len(actual) == 6
    for a, e in zip(actual, expected):
        assert a.shape == e.shape
        assert relative_error(a, e) < ONNX_TOLERANCE


def test_onnx_export_tool_classifier(tmp_path, capsys):
    tool = load_tool('export_onnx')
    out = str(tmp_path / 'cls.onnx')
    error = tool.main(['rexnet-lite-1.0x', out, '--shape', '96', '96'])
    assert error < ONNX_TOLERANCE and osp.isfile(out)
    assert 'onnxruntime vs PyTorch' in capsys.readouterr().out
    runner = OrtRunner(out)
    assert [o.name for o in runner.session.get_outputs()] == ['logits']
    with pytest.raises(SystemExit) as exc:
        tool.main(['rexnet-1.0x', str(tmp_path / 'x.pt')])
    assert exc.value.code == 2
    assert "OUT must end with .onnx, got '" in capsys.readouterr().err


def test_onnx_export_needs_eval_mode(tmp_path):
    with pytest.raises(RuntimeError, match='eval-mode'):
        export_onnx(ReXNet().train(), str(tmp_path / 'x.onnx'))


@pytest.mark.parametrize('fused', [False, True])
def test_jit_trace_matches_eager(fused):
    model = build('v1', 'backbone')
    if fused:
        model.fuse()
    with torch.no_grad():
        traced = torch.jit.trace(model, synthetic_input(5, (1, 3, 64, 64)),
                                 check_trace=False)
    # traced at 64x64, run at another batch and size
    actual, expected = run(traced, X), run(model, X)
    assert len(actual) == len(expected) == 6
    for a, e in zip(actual, expected):
        assert a.shape == e.shape
        assert relative_error(a, e) < FUSE_TOLERANCE


def test_torch_compile_captures_the_backbone_whole():
    model = synthetic(ReXNet(out_indices=(2, 4)))
    compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
    x = synthetic_input(5, (1, 3, 64, 64))
    actual, expected = run(compiled, x), run(model, x)
    assert [tuple(a.shape) for a in actual] == [(1, 61, 8, 8),
                                                (1, 185, 2, 2)]
    assert len(expected) == 2
    for a, e in zip(actual, expected):
        assert relative_error(a, e) < FUSE_TOLERANCE
