"""Channel alignment (zero-padded widths, same outputs) and the ONNX graph
rewrites of the deployed peers (Pad folding)."""
import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from rexnet_det import ReXNet, ReXNetClassifier
from rexnet_det.deploy.onnx import OrtRunner, export_onnx
from rexnet_det.models.utils import (align_channels, fuse_model, is_aligned,
                                     is_fused)
from tools.lib.onnx_graph import (constant_fold, conv_channels, count_ops,
                                  fold_pads)

from .conftest import load_tool
from .fixtures.synthetic_weights import (relative_error, synthetic_input,
                                         synthetic_state_dict)

ALL_TAPS = (0, 1, 2, 3, 4, 5)
TOLERANCE = 1e-5
X = synthetic_input(11, (2, 3, 64, 96))


def synthetic(model, seed=3):
    state = synthetic_state_dict(seed, [(k, v.shape) for k, v in
                                        model.state_dict().items()])
    model.load_state_dict(state)
    return model.eval()


def run(model, x):
    with torch.no_grad():
        out = model(x)
    return out if isinstance(out, tuple) else (out, )


def assert_same(actual, expected, tolerance=TOLERANCE):
    assert len(actual) == len(expected) > 0
    for a, e in zip(actual, expected):
        assert a.shape == e.shape
        assert relative_error(a, e) < tolerance


def convs(model):
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize('width, arch, taps', [
    (1.0, 'v1', ALL_TAPS), (1.3, 'v1', (2, 4)), (0.9, 'v1', (0, 3)),
    (1.0, 'lite', ALL_TAPS)])
def test_aligned_backbone_matches_in_float32(width, arch, taps):
    model = synthetic(ReXNet(width_mult=width, arch=arch, out_indices=taps))
    expected = run(model, X)
    aligned = align_channels(copy.deepcopy(model))
    assert is_aligned(aligned) and not is_aligned(model)
    assert_same(run(aligned, X), expected)
    # every internal conv is padded (the image input keeps its 3 channels)
    for conv in convs(aligned):
        assert conv.out_channels % 4 == 0
        assert conv.in_channels % 4 == 0 or conv is aligned.stem.conv
    if arch == 'v1' and width == 1.0:
        assert aligned.blocks[1].conv_pwl.conv.weight.shape == (28, 96, 1, 1)
        assert aligned.blocks[3].se.fc1.weight.shape == (20, 228, 1, 1)
    assert aligned.out_channels == model.out_channels


def test_aligned_taps_are_exact_in_float64():
    model = synthetic(ReXNet(out_indices=ALL_TAPS)).double()
    aligned = align_channels(copy.deepcopy(model), multiple=8)
    x = X.double()
    assert_same(run(aligned, x), run(model, x), 1e-12)


def test_padded_channels_stay_zero():
    model = align_channels(synthetic(ReXNet(out_indices=(4, ))))
    seen = []
    for i in (1, 2, 3):  # 27, 38, 50 true output channels
        def hook(module, args, out, i=i):
            seen.append(out)
        model.blocks[i].register_forward_hook(hook)
    run(model, X)
    assert [t.shape[1] for t in seen] == [28, 40, 52]
    assert all(torch.all(t[:, n:] == 0) for t, n in zip(seen, (27, 38, 50)))


def test_classifier_and_fuse_in_either_order():
    model = synthetic(ReXNetClassifier())
    expected = run(model, X)
    aligned_then_fused = fuse_model(align_channels(copy.deepcopy(model)))
    fused_then_aligned = align_channels(fuse_model(copy.deepcopy(model)))
    for m in (aligned_then_fused, fused_then_aligned):
        assert is_aligned(m) and is_fused(m)
        assert_same(run(m, X), expected)
        # a fused channels_last model keeps its 3x3 weights NHWC
        dw = m.backbone.blocks[2].conv_dw.conv.weight
        assert dw.is_contiguous(memory_format=torch.channels_last)
    assert aligned_then_fused.backbone.blocks[2].conv_dw.conv.bias.shape \
        == (164, )


def test_align_is_idempotent_and_realigns():
    model = synthetic(ReXNet(out_indices=(1, 5)))
    expected = run(model, X)
    align_channels(model)
    shapes = [c.weight.shape for c in convs(model)]
    assert align_channels(model) is model
    assert [c.weight.shape for c in convs(model)] == shapes
    align_channels(model, multiple=16)
    assert all(c.out_channels % 16 == 0 for c in convs(model))
    assert_same(run(model, X), expected)
    # multiple=1 and models without a ReXNet are left alone
    plain = synthetic(ReXNet(out_indices=(2, )))
    before = [c.weight.shape for c in convs(plain)]
    align_channels(plain, multiple=1)
    assert [c.weight.shape for c in convs(plain)] == before
    other = nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5))
    assert align_channels(other) is other and other[0].out_channels == 5


@pytest.mark.parametrize('multiple', [0, -1, 3.5, True, '4'])
def test_bad_multiple_raises(multiple):
    with pytest.raises(ValueError, match=f'multiple must be an int >= 1, '
                       f'got {multiple!r}'.replace('.', r'\.')):
        align_channels(ReXNet().eval(), multiple=multiple)


def test_group_norm_raises_and_changes_nothing():
    model = ReXNet(norm_cfg=dict(type='GN', num_groups=8)).eval()
    before = [c.weight.shape for c in convs(model)]
    with pytest.raises(ValueError, match='got GroupNorm at stem'):
        align_channels(model)
    assert [c.weight.shape for c in convs(model)] == before
    model = synthetic(ReXNet())
    model.blocks[5].se.bn = nn.GroupNorm(1, 38).eval()
    with pytest.raises(ValueError, match='GroupNorm at blocks.5.se'):
        align_channels(model)
    assert model.stem.conv.out_channels == 32 and not is_aligned(model)


def test_aligned_flops_grow_about_two_percent():
    from tools.lib.flops import image_complexity
    model = ReXNet(out_indices=(5, )).eval()
    base = image_complexity(model, 224, 224)['macs']
    aligned = image_complexity(align_channels(model), 224, 224)['macs']
    assert 1.01 < aligned / base < 1.03, aligned / base


def test_aligned_onnx_has_only_multiples_of_4(tmp_path):
    import onnx
    model = synthetic(ReXNet(out_indices=ALL_TAPS))
    plain = export_onnx(model, str(tmp_path / 'plain.onnx'),
                        input_shape=(1, 3, 64, 64), align=False)
    path = export_onnx(model, str(tmp_path / 'aligned.onnx'),
                       input_shape=(1, 3, 64, 64))
    assert not is_aligned(model)  # the export aligns a copy
    rows = conv_channels(onnx.load(path))
    assert len(rows) == 75 and sum(r['graph_input'] for r in rows) == 1
    odd = [r for r in rows if r['out_channels'] % 4 or
           (r['in_channels'] % 4 and not r['graph_input'])]
    assert odd == []
    assert [r for r in conv_channels(onnx.load(plain))
            if r['out_channels'] % 4]  # the check can fail
    runner = OrtRunner(path, threads=1)
    assert [o.name for o in runner.session.get_outputs()] == \
        [f'tap{i}' for i in ALL_TAPS]
    expected = run(model, X)
    assert_same(runner(X), expected, 1e-4)
    assert_same(OrtRunner(plain, threads=1)(X), expected, 1e-4)


def test_export_onnx_tool_aligns_by_default(tmp_path, capsys):
    import onnx
    tool = load_tool('deploy/export_onnx.py')
    out = str(tmp_path / 'b.onnx')
    tool.main(['rexnet-1.0x-backbone', out, '--shape', '64', '64'])
    assert 'channel-aligned' in capsys.readouterr().out
    assert all(r['out_channels'] % 4 == 0 for r in
               conv_channels(onnx.load(out)))
    tool.main(['rexnet-1.0x-backbone', out, '--shape', '64', '64',
               '--force', '--no-align'])
    assert 'unaligned' in capsys.readouterr().out
    assert any(r['out_channels'] % 4 for r in conv_channels(onnx.load(out)))


def test_detector_export_aligned_gives_the_same_dets(tmp_path):
    import onnx
    from tools.lib.busy_weights import busy_weights
    from tools.lib.detectors import build_detector, load_config
    from rexnet_det.deploy.compare import match_detections
    from rexnet_det.deploy.detector import DeployedDetector, export_detector
    config = 'rexnet_det::ssdlite/ssdlite_rexnet-1.0x_8xb24-600e_coco.py'
    torch.manual_seed(0)
    detector = busy_weights(build_detector(load_config(config)), 128, 128)
    ckpt = str(tmp_path / 'busy.pth')
    torch.save({'state_dict': detector.state_dict()}, ckpt)
    outs = {}
    for align in (True, False):
        path = str(tmp_path / f'{align}.onnx')
        export_detector(config, ckpt, path, shape=(128, 128), align=align)
        odd = [r for r in conv_channels(onnx.load(path))
               if r['out_channels'] % 4 and 'backbone' in r['name']]
        assert bool(odd) is not align
        image = np.random.RandomState(0).randint(
            0, 255, (128, 128, 3)).astype(np.uint8)
        outs[align] = DeployedDetector(path, 'ort', 1).predict(image)
    aligned, plain = outs[True], outs[False]
    assert len(plain.scores) > 10
    # pairs, not positions: scores equal to ~1e-6 may swap places in the
    # sorted output, and one may swap across the max_per_img cut; every
    # detection no other one scores within 1e-4 of must pair up
    match = match_detections(
        (plain.bboxes, plain.scores, plain.labels),
        (aligned.bboxes, aligned.scores, aligned.labels),
        iou_thr=0.999, score_tol=1e-4)
    assert match.untied >= len(plain.scores), match
    assert match.untied_fraction == 1.0, match
    assert match.worst_box_diff < 1e-4 * 128


class _SamePad(nn.Module):
    """A conv behind a pad computed from the input size (like mmdet's
    EfficientNet)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        h, w = x.shape[-2:]
        pad_h = max((-(-h // 2) - 1) * 2 + 3 - h, 0)
        pad_w = max((-(-w // 2) - 1) * 2 + 3 - w, 0)
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2,
                      pad_h - pad_h // 2])
        return self.conv2(F.pad(self.conv(x), [1, 1, 1, 1]))


def test_fold_pads_moves_pads_into_convs(tmp_path):
    import onnx
    import onnxruntime as ort
    model = _SamePad().eval()
    path = export_onnx(model, str(tmp_path / 'pad.onnx'),
                       input_shape=(1, 3, 32, 32), names=['out'])
    folded = fold_pads(constant_fold(onnx.load(path), [1, 3, 32, 32]))
    assert count_ops(onnx.load(path)).get('Pad', 0) == 2
    assert 'Pad' not in count_ops(folded)
    x = synthetic_input(2, (1, 3, 32, 32))
    session = ort.InferenceSession(folded.SerializeToString(),
                                   providers=['CPUExecutionProvider'])
    actual = session.run(None, {'input': x.numpy()})[0]
    assert relative_error(torch.from_numpy(actual), run(model, x)[0]) < 1e-6


def test_fused_checkpoint_refuses_an_aligned_model():
    from rexnet_det.checkpoint import fused_checkpoint
    model = align_channels(fuse_model(ReXNet().eval()))
    with pytest.raises(ValueError, match='expects an unaligned model'):
        fused_checkpoint(model)


def test_export_of_an_unalignable_model_warns_and_exports_unaligned(
        tmp_path):
    import onnx
    model = ReXNet(norm_cfg=dict(type='GN', num_groups=8),
                   out_indices=(2, )).eval()
    with pytest.warns(UserWarning, match='without channel alignment: .*'
                      'GroupNorm at stem'):
        path = export_onnx(model, str(tmp_path / 'gn.onnx'),
                           input_shape=(1, 3, 32, 32))
    assert any(r['out_channels'] % 4 for r in conv_channels(onnx.load(path)))


def test_fold_pads_on_mmdet_efficientnet(tmp_path):
    import onnxruntime as ort
    from mmdet.models.backbones import EfficientNet
    from tools.bench.sections.backbones import export_static, fold_pads_file
    torch.manual_seed(0)
    model = EfficientNet(arch='b0', out_indices=(6, ))
    model.eval()
    src = export_static(model, str(tmp_path / 'e.onnx'), 64)
    dst = str(tmp_path / 'f.onnx')
    assert fold_pads_file(src, dst, 64) == dict(pads_before=17,
                                                pads_after=0)
    x = synthetic_input(4, (1, 3, 64, 64)).numpy()

    def infer(path):
        session = ort.InferenceSession(path,
                                       providers=['CPUExecutionProvider'])
        return torch.from_numpy(session.run(None, {'input': x})[0])

    assert relative_error(infer(dst), infer(src)) < 1e-6
    assert relative_error(infer(dst), run(model, torch.from_numpy(x))[0]) \
        < 1e-5
