"""Single-stage detectors as one ONNX file: graph ops, export of every
supported config, runtime, verification on a briefly trained SSDLite, and
the errors users meet."""
import copy
import functools
import json
import os.path as osp
import re
import struct
import sys
import zlib

import numpy as np
import onnx
import pytest
import torch

from rexnet_det.datasets import (ImageLoadError, SyntheticCocoSpec,
                                 make_synthetic_coco)
from rexnet_det.deploy.compare import match_detections, same_score_multiset
from rexnet_det.deploy.detector import (EMPTY_LABEL, RUNTIMES,
                                        DeployedDetector,
                                        NotADeployedDetectorError,
                                        RuntimeNotInstalledError,
                                        SingleStageExport,
                                        UnsupportedDetectorError,
                                        export_detector, verify_detector)
from rexnet_det.deploy.detector.runtime import (MAX_IMAGE_PIXELS,
                                                InvalidImageError)
from rexnet_det.deploy.detector.ops import (batched_nms_fixed,
                                            delta_xywh_decode, level_anchors,
                                            non_max_suppression,
                                            select_candidates)
from rexnet_det.deploy.detector.resize import rule_from_pipeline
from rexnet_det.deploy.detector.verify import (ready_for_inference,
                                               with_test_size)
from tools.lib.busy_weights import busy_weights
from tools.lib.detectors import build_detector, load_config

from .conftest import load_tool

FASTER_RCNN = 'rexnet_det::faster_rcnn/faster-rcnn_rexnet-1.0x_fpn_1x_coco.py'
RETINANET = 'rexnet_det::retinanet/retinanet_rexnet-1.0x_fpn_1x_coco.py'
SSDLITE = 'rexnet_det::ssdlite/ssdlite_rexnet-1.0x_8xb24-600e_coco.py'
# Every config the export must handle, at small sizes (H, W); our RetinaNet
# has its own test below (keep-ratio resize). Keep-ratio configs export
# with a dynamic input size and are checked at (H, W) and at (W, H).
CONFIGS = [
    (SSDLITE, (128, 128)),
    ('rexnet_det::ssdlite/ssdlite_rexnet-1.0x-in1k-pre_8xb24-600e_coco.py',
     (96, 128)),
    ('rexnet_det::ssdlite/ssdlite_rexnet-1.3x_8xb24-600e_coco.py',
     (128, 96)),
    ('rexnet_det::ssdlite/ssdlite_rexnet-1.5x_8xb24-600e_coco.py',
     (96, 96)),
    ('rexnet_det::ssdlite/ssdlite_rexnet-2.0x_8xb24-600e_coco.py',
     (128, 128)),
    ('mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py',
     (128, 128)),
    ('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', (96, 128)),
]


def deploy_tool(name):
    return load_tool(f'deploy/{name}.py')


def images(seed, batch, height, width):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, height, width, generator=gen) * 255


def filled(dets, labels):
    """(boxes, scores, labels) of the filled slots of one image."""
    dets, labels = np.asarray(dets), np.asarray(labels)
    keep = labels >= 0
    return dets[keep, :4], dets[keep, 4], labels[keep]


def mmdet_predict(detector, inputs):
    """mmdet's own predict (rescale=False) on normalised inputs."""
    from mmdet.structures import DetDataSample
    h, w = inputs.shape[2:]
    samples = []
    for _ in range(len(inputs)):
        sample = DetDataSample()
        sample.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w),
                                 scale_factor=(1.0, 1.0),
                                 batch_input_shape=(h, w)))
        samples.append(sample)
    with torch.no_grad():
        return [r.pred_instances for r in
                detector.predict(inputs, samples, rescale=False)]


@functools.lru_cache(maxsize=None)
def _config(name):
    return load_config(name)


def config(name):
    """A fresh copy of a config (reading one with ``mmdet::`` bases takes
    seconds: mmengine parses mmdet's model index each time)."""
    return copy.deepcopy(_config(name))


def busy_detector(name, shape, folder):
    """A random detector with busy weights and its checkpoint file."""
    torch.manual_seed(0)  # PyTorch's default init draws from the global RNG
    detector = busy_weights(build_detector(config(name), init=False), *shape)
    path = str(folder / 'model.pth')
    torch.save({'state_dict': detector.state_dict()}, path)
    return detector, path


# ---------------------------------------------------------------- graph ops

def test_nms_op_eager_and_onnx_agree(tmp_path):
    # two clusters; box 1 overlaps box 0 (IoU 0.81), box 3 scores 0 (out)
    boxes = torch.tensor([[[0, 0, 10, 10], [1, 1, 11, 10], [20, 20, 30, 30],
                           [40, 40, 50, 50.]]]).repeat(2, 1, 1)
    scores = torch.tensor([[[0.9, 0.8, 0.7, 0.0], [0.1, 0.95, 0.2, 0.3]],
                           [[0.5, 0.6, 0.0, 0.0], [0.0, 0.0, 0.0, 0.4]]])
    expected = [[0, 0, 0], [0, 0, 2], [0, 1, 1], [0, 1, 3], [0, 1, 2],
                [1, 0, 1], [1, 1, 3]]

    class Op(torch.nn.Module):
        def forward(self, b, s):
            return non_max_suppression(b, s, 10, 0.5, 0.0)

    assert Op()(boxes, scores).tolist() == expected
    path = str(tmp_path / 'nms.onnx')
    torch.onnx.export(Op(), (boxes, scores), path, dynamo=False,
                      opset_version=17, input_names=['b', 's'])
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    out = session.run(None, {'b': boxes.numpy(), 's': scores.numpy()})[0]
    assert out.tolist() == expected
    assert [n.op_type for n in onnx.load(path).graph.node] == [
        'Constant', 'Constant', 'Constant', 'NonMaxSuppression']


def test_batched_nms_fixed_matches_mmcv_and_marks_empty_slots():
    from mmcv.ops import batched_nms
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 60, 2, generator=gen) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(2, 60, 2, generator=gen) * 20],
                      -1)
    scores = torch.rand(2, 60, generator=gen)
    labels = torch.randint(0, 3, (2, 60), generator=gen)
    valid = scores > 0.3
    dets, out_labels, index = batched_nms_fixed(boxes, scores, labels, valid,
                                                0.5, 100)
    assert dets.shape == (2, 100, 5) and out_labels.shape == (2, 100)
    for b in range(2):
        keep = valid[b]
        ref, kept = batched_nms(boxes[b, keep], scores[b, keep],
                                labels[b, keep],
                                dict(type='nms', iou_threshold=0.5))
        n = len(ref)
        assert 0 < n < 60  # non-empty, and fewer than the slots (padded)
        assert torch.equal(dets[b, :n], ref)
        assert torch.equal(out_labels[b, :n], labels[b, keep][kept])
        assert torch.equal(index[b, :n], keep.nonzero()[:, 0][kept])
        assert (out_labels[b, n:] == EMPTY_LABEL).all()
        assert (dets[b, n:] == 0).all()
    # max_per_img keeps the best ones
    top, _, _ = batched_nms_fixed(boxes, scores, labels, valid, 0.5, 4)
    assert torch.equal(top, dets[:, :4])


def test_decode_and_candidates_match_mmdet():
    from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
    from mmdet.models.utils import filter_scores_and_topk
    gen = torch.Generator().manual_seed(1)
    xy = torch.rand(500, 2, generator=gen) * 80
    priors = torch.cat([xy, xy + torch.rand(500, 2, generator=gen) * 40], 1)
    deltas = torch.randn(500, 4, generator=gen) * 2
    coder = DeltaXYWHBBoxCoder(target_stds=[0.1, 0.1, 0.2, 0.2])
    expected = coder.decode(priors, deltas, max_shape=(96, 112))
    actual = delta_xywh_decode(priors, deltas, (96, 112), coder.means,
                               coder.stds)
    assert torch.equal(actual, expected)
    scores = torch.rand(500, 7, generator=gen)
    top, prior_index, labels, valid = select_candidates(scores[None], 0.95,
                                                        300)
    ref_scores, ref_labels, ref_index, _ = filter_scores_and_topk(
        scores, 0.95, 300)
    n = len(ref_scores)
    assert 0 < n < 300 and int(valid.sum()) == n and valid[0, :n].all()
    assert torch.equal(top[0, :n], ref_scores)
    assert torch.equal(labels[0, :n], ref_labels)
    assert torch.equal(prior_index[0, :n], ref_index)


def test_grid_anchors_follow_the_feature_shape(tmp_path):
    """level_anchors equal mmdet's grid_priors bit for bit (RetinaNet's
    and SSD's generators), and exported they follow the input size."""
    from mmdet.registry import TASK_UTILS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    generators = [TASK_UTILS.build(c) for c in (
        config(RETINANET).model.bbox_head.anchor_generator,
        config(SSDLITE).model.bbox_head.anchor_generator)]
    for generator in generators:
        levels = generator.num_levels
        for h, w in ((4, 5), (5, 3), (1, 1)):
            sizes = [(h * 2**i, w * 2**i) for i in range(levels)][::-1]
            feats = [torch.zeros(1, 1, *s) for s in sizes]
            expected = generator.grid_priors(sizes, device='cpu')
            ours = level_anchors(generator, feats)
            assert all(torch.equal(a, b) for a, b in zip(ours, expected))

    class Anchors(torch.nn.Module):
        def forward(self, x):
            return level_anchors(generators[0], [x])[0]

    path = str(tmp_path / 'anchors.onnx')
    torch.onnx.export(Anchors(), (torch.zeros(1, 1, 3, 4), ), path,
                      dynamo=False, opset_version=17, input_names=['x'],
                      dynamic_axes={'x': {2: 'h', 3: 'w'}})
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    for h, w in ((3, 4), (7, 2)):
        out = session.run(None, {'x': np.zeros((1, 1, h, w), np.float32)})
        assert np.array_equal(out[0], generators[0].single_level_grid_priors(
            (h, w), 0, device='cpu').numpy())


def test_dense_capped_ties_keep_the_score_multiset(tmp_path):
    """300 candidates in 5 groups of exactly equal scores, NMS and
    max_per_img both binding: which tied boxes fill the last slots is
    arbitrary (it differs between CPUs and runtimes), so eager PyTorch,
    onnxruntime and OpenVINO are compared by their score multiset, with
    boxes matched among equal scores."""
    import onnxruntime as ort
    import openvino as ov
    gen = torch.Generator().manual_seed(0)
    # a 20 x 15 grid of disjoint 8 px boxes; each has a twin shifted by
    # 1 px (IoU 0.6) that scores lower and is suppressed
    y, x = torch.meshgrid(torch.arange(15.) * 10, torch.arange(20.) * 10,
                          indexing='ij')
    grid = torch.stack([x, y, x + 8, y + 8], -1).reshape(-1, 4)
    levels = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    score = levels[torch.randperm(300, generator=gen) % 5]
    label = torch.randint(0, 3, (300, ), generator=gen)
    boxes = torch.cat([grid, grid + 1])[None]
    scores = torch.cat([score, score - 0.05])[None]
    labels = torch.cat([label, label])[None]
    k = 100  # 60 boxes at 0.9, then 40 of the 60 tied at 0.8

    class Op(torch.nn.Module):
        def forward(self, b, s, lab):
            dets, out_labels, _ = batched_nms_fixed(b, s, lab, s > 0, 0.5, k)
            return dets, out_labels

    with torch.no_grad():
        outputs = {'eager': [o.numpy() for o in Op()(boxes, scores,
                                                      labels)]}
    path = str(tmp_path / 'dense.onnx')
    torch.onnx.export(Op(), (boxes, scores, labels), path, dynamo=False,
                      opset_version=17, input_names=['b', 's', 'lab'],
                      output_names=['dets', 'labels'])
    feed = {'b': boxes.numpy(), 's': scores.numpy(), 'lab': labels.numpy()}
    outputs['ort'] = ort.InferenceSession(
        path, providers=['CPUExecutionProvider']).run(None, feed)
    compiled = ov.Core().compile_model(path, 'CPU',
                                       {'INFERENCE_PRECISION_HINT': 'f32'})
    result = compiled(feed)
    outputs['openvino'] = [np.asarray(result[o]) for o in compiled.outputs]
    expected = np.array([0.9] * 60 + [0.8] * 40, np.float32)
    top = (score == 0.9).numpy()
    assert top.sum() == 60 and (score == 0.8).sum() == 60
    ref = (grid[top].numpy(), score[top].numpy(), label[top].numpy())
    tied = {tuple(b) + (int(lab), ) for b, lab in
            zip(grid[score == 0.8].tolist(), label[score == 0.8])}
    for name, (dets, out_labels) in outputs.items():
        boxes_, scores_, labels_ = filled(dets[0], out_labels[0])
        assert same_score_multiset(scores_, expected, 0), name
        above = scores_ > 0.85
        # above the cut every tied box is there: they pair up, whatever
        # their order (and none is "untied": positions mean nothing)
        match = match_detections(ref, (boxes_[above], scores_[above],
                                       labels_[above]), iou_thr=1.0,
                                 score_tol=0)
        assert match.matched == 60 and match.fraction == 1.0, name
        assert match.untied == 0
        # at the cut: 40 different boxes, each one of the 60 tied at 0.8
        cut = {tuple(b) + (int(lab), ) for b, lab in
               zip(boxes_[~above].tolist(), labels_[~above])}
        assert len(cut) == 40 and cut <= tied, name


@pytest.mark.parametrize('keep_ratio, size, static', [
    (False, (64, 96), True), (True, (96, 128), True),
    (True, (96, 128), False)])
def test_resize_rule_reproduces_mmdet_preprocessing(keep_ratio, size,
                                                    static):
    """Our input, normalised, equals mmdet's pipeline + preprocessor
    output, and the scale factors agree: a fixed canvas when the image
    fills it, and keep_ratio_pad_divisor (the default keep-ratio export)
    on landscape and portrait images alike."""
    from mmcv.transforms import Compose
    from mmdet.models.data_preprocessors import DetDataPreprocessor
    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    resize = dict(type='mmdet.Resize', scale=(size[1], size[0]),
                  keep_ratio=keep_ratio)
    pipeline = [dict(type='mmdet.LoadImageFromNDArray'), resize,
                dict(type='mmdet.PackDetInputs')]
    pre = DetDataPreprocessor(mean=mean, std=std, bgr_to_rgb=True,
                              pad_size_divisor=32)
    rule = rule_from_pipeline(pipeline, None, 32, mean, static, 32)
    mode = 'keep_ratio' if keep_ratio else 'stretch'
    assert (rule.mode, rule.size) == ((mode, list(size)) if static else
                                      ('keep_ratio_pad_divisor', None))
    # static canvases: the landscape image that fills the canvas only
    shapes = [(50, 70)] if static else [(50, 70), (70, 50), (33, 41)]
    for h, w in shapes:
        image = np.random.RandomState(0).randint(0, 256, (h, w, 3),
                                                 np.uint8)
        data = pre(dict(zip(('inputs', 'data_samples'), zip(*[
            (d['inputs'], d['data_samples']) for d in
            [Compose(pipeline)(dict(img=image, img_id=0))]]))), False)
        prepared = rule.apply(image)
        ours = (torch.from_numpy(prepared.input) - torch.tensor(mean).view(
            3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
        assert data['inputs'].shape[2:] == prepared.input.shape[1:]
        assert torch.allclose(ours, data['inputs'][0], atol=1e-5)
        meta = data['data_samples'][0].metainfo
        assert prepared.scale_factor == pytest.approx(meta['scale_factor'])
        assert prepared.img_shape == tuple(meta['img_shape'])
    if not static:  # (70, 50) -> 128 x 91, padded to 128 x 96
        assert rule.apply(np.zeros((70, 50, 3), np.uint8)).input.shape == (
            3, 128, 96)


# ------------------------------------------------ export of every config

@pytest.mark.parametrize('name, shape', CONFIGS,
                         ids=[c.split('/')[-1][:-3] for c, _ in CONFIGS])
def test_export_matches_pytorch(name, shape, tmp_path):
    detector, checkpoint = busy_detector(name, shape, tmp_path)
    out = str(tmp_path / 'model.onnx')
    cfg = config(name)
    keep_ratio = 'retinanet' in name
    meta = export_detector(cfg, checkpoint, out,
                           shape=None if keep_ratio else shape,
                           dynamic_batch=True)
    assert meta.resize.size == (None if keep_ratio else list(shape))
    for size in (shape, shape[::-1]) if keep_ratio else (shape, ):
        check_export(detector, cfg, out, meta, size)


def check_export(detector, cfg, out, meta, size=None):
    """The file has standard ops only; the PyTorch wrapper reproduces
    mmdet's predict; onnxruntime reproduces the wrapper (batch 2)."""
    k = cfg.model.test_cfg.max_per_img
    assert meta.max_per_img == k
    assert len(meta.classes) == detector.bbox_head.num_classes
    model = onnx.load(out)
    assert {n.domain for n in model.graph.node} == {''}  # no custom ops
    assert {'NonMaxSuppression', 'TopK'} <= {n.op_type
                                             for n in model.graph.node}
    x = images(1, 2, *(size or meta.resize.size))
    wrapper = SingleStageExport(detector).eval()
    with torch.no_grad():
        dets, labels = wrapper(x)
    # mmdet's SSDHead gets its predict fixed by ready_for_inference
    reference = mmdet_predict(ready_for_inference(detector, cfg),
                              wrapper.normalizer(x))
    ort_dets, ort_labels = DeployedDetector(out, threads=1).infer(x.numpy())
    assert ort_dets.shape == (2, k, 5) and ort_labels.dtype == np.int64
    for i in range(2):
        ref = reference[i]
        assert len(ref) == k  # busy weights: every slot filled
        same = match_detections((ref.bboxes, ref.scores, ref.labels),
                                filled(dets[i], labels[i]))
        assert same.fraction == 1.0 and same.worst_box_diff < 1e-4
        # float32 rounding of onnxruntime's kernels: pairs within IoU 0.98
        # and 2e-3 in score (untrained busy weights amplify it more than
        # trained ones: see the trained tests below)
        ort = match_detections(filled(dets[i], labels[i]),
                               filled(ort_dets[i], ort_labels[i]))
        assert ort.fraction >= 0.99 and ort.worst_box_diff < 0.5, ort


def test_retinanet_keep_ratio_export(tmp_path):
    """RetinaNet (keep ratio): the default export takes any input padded to
    a multiple of 32, as mmdet pads, so the deployed detections equal
    mmdet's on images of any shape, in original pixels; --static-shape
    keeps a fixed canvas, which equals mmdet only when the resized image
    fills it. Bad shapes are refused by name."""
    from mmdet.apis import inference_detector
    detector, checkpoint = busy_detector(RETINANET, (128, 160), tmp_path)
    cfg = config(RETINANET)
    for step in cfg.test_dataloader.dataset.pipeline:
        if step.type == 'Resize':
            step.scale = (160, 128)
    out = str(tmp_path / 'retina.onnx')
    meta = export_detector(cfg, checkpoint, out)
    rule = meta.resize
    assert (rule.mode, rule.size, rule.divisor) == (
        'keep_ratio_pad_divisor', None, 32)
    assert rule.pad_value == pytest.approx(meta.mean)
    model = ready_for_inference(detector, cfg)
    deployed = DeployedDetector(out, threads=1)
    # landscape, portrait (160 x 91, padded to 160 x 96) and one that fills
    # the 128 x 160 canvas; each input as mmdet's
    for seed, (h, w) in enumerate(((200, 330), (300, 170), (256, 320))):
        image = np.random.RandomState(seed).randint(0, 256, (h, w, 3),
                                                    np.uint8)
        ref = inference_detector(model, image).pred_instances
        result = deployed.predict(image)
        assert len(ref) == len(result) == 100
        match = match_detections((ref.bboxes, ref.scores, ref.labels),
                                 (result.bboxes, result.scores,
                                  result.labels))
        # every detection pairs up; busy random weights amplify
        # onnxruntime's float rounding to a few hundredths of a pixel (the
        # trained two-stage test holds boxes to 1e-3 px)
        assert match.fraction == 1.0 and match.worst_box_diff < 0.1, match
    with pytest.raises(ValueError, match=r'retina.onnx takes \[N, 3, H, W\] '
                       r'input with H and W multiples of 32 .*e\.g\. to '
                       r'\[128, 128\]\), got \[1, 3, 100, 128\]'):
        deployed.infer(np.zeros((1, 3, 100, 128), np.float32))
    with pytest.raises(ValueError, match=r'one padded size, got 2 sizes '
                       r'\(H, W\) \[\(96, 160\), \(160, 96\)\]'):
        deployed.predict_batch([np.zeros((80, 150, 3), np.uint8),
                                np.zeros((150, 80, 3), np.uint8)])
    static = str(tmp_path / 'static.onnx')
    meta = export_detector(cfg, checkpoint, static, static_shape=True)
    assert (meta.resize.mode, meta.resize.size) == ('keep_ratio', [128, 160])
    result = DeployedDetector(static, threads=1).predict(image)
    match = match_detections((ref.bboxes, ref.scores, ref.labels),
                             (result.bboxes, result.scores, result.labels))
    assert match.fraction == 1.0 and match.worst_box_diff < 0.1, match


# ----------------------------------- a briefly trained SSDLite, end to end

@pytest.fixture(scope='module')
def trained(trained_ssdlite):
    """The briefly trained SSDLite of conftest.py (shared with the INT8
    tests)."""
    return trained_ssdlite


def test_trained_export_verifies_with_onnxruntime(trained, tmp_path, capsys):
    out = str(tmp_path / 'verify.json')
    report = deploy_tool('verify').main([trained['config'],
                                       trained['checkpoint'],
                                       trained['model'], '--json', out])
    printed = capsys.readouterr().out
    match = report.match
    assert report.images == 32 and match.reference > 0  # non-empty
    # ~166 detections per image down to score_thr 0.02: most lie within
    # 2e-3 of another; about a tenth are untied, and all of those pair up
    assert match.candidate > 0 and match.untied >= match.reference // 10
    assert match.untied_fraction == 1.0, report.summary()
    assert match.worst_box_diff < 0.05
    # some detections hit the shapes; untied mAP within 2% of it
    assert report.untied_map['bbox']['reference'] > 0
    assert report.failures() == [] and 'parity: met' in printed
    assert 'detections matched' in printed and ' ORT' in printed
    with open(out) as f:
        assert json.load(f)['matched'] == match.matched


def test_trained_export_verifies_with_openvino(trained):
    report = verify_detector(trained['config'], trained['checkpoint'],
                             trained['model'], runtime='openvino',
                             threads=1, max_images=8)
    assert report.images == 8 and report.match.reference > 0
    assert report.match.untied >= report.match.reference // 10
    assert report.match.untied_fraction == 1.0, report.summary()
    assert report.match.worst_box_diff < 0.05
    assert report.failures() == []


def test_trained_metadata_and_infer_tool(trained, tmp_path, capsys):
    import onnxruntime as ort
    props = ort.InferenceSession(
        trained['model'], providers=['CPUExecutionProvider']
    ).get_modelmeta().custom_metadata_map
    assert json.loads(props['classes']) == ['circle', 'rectangle',
                                            'triangle', 'ellipse']
    assert json.loads(props['resize'])['mode'] == 'stretch'
    assert json.loads(props['resize'])['size'] == [128, 128]
    assert json.loads(props['score_thr']) == pytest.approx(0.02)
    assert 'label -1' in json.loads(props['empty_slot'])
    paths = [osp.join(trained['data'], 'val', f'{i:06d}.png')
             for i in range(2)]
    show = str(tmp_path / 'vis')
    results = deploy_tool('infer').main([trained['model'], *paths,
                                       '--show-dir', show, '--score-thr',
                                       '0.05'])
    assert len(results) == 2 and all(len(r) > 0 for r in results)
    # boxes are in the 96 px originals, not the 128 px input
    assert max(float(r.bboxes.max()) for r in results) <= 96
    assert all(osp.isfile(osp.join(show, osp.basename(p))) for p in paths)
    assert f'{paths[0]}: {len(results[0])} detections' in \
        capsys.readouterr().out


# ------------------------------------------------------------------ errors

def test_unsupported_two_stage_config_is_refused_by_name(tmp_path, capsys):
    """Faster / Mask R-CNN export (tests/test_deploy_two_stage.py); other
    RoI heads are refused, naming the detector and the head."""
    cfg = config(FASTER_RCNN)
    cfg.model.roi_head.type = 'CascadeRoIHead'
    with pytest.raises(UnsupportedDetectorError,
                       match="builds 'FasterRCNN' with roi_head "
                       "'CascadeRoIHead'; two-stage export supports"):
        export_detector(cfg, None, str(tmp_path / 'x.onnx'))
    path = str(tmp_path / 'cascade.py')
    cfg.dump(path)
    with pytest.raises(SystemExit, match="roi_head 'CascadeRoIHead'"):
        deploy_tool('export').main([path, 'x.pth', '--out',
                                  str(tmp_path / 'x.onnx')])
    assert not osp.exists(tmp_path / 'x.onnx')


def test_bad_export_arguments(tmp_path):
    out = str(tmp_path / 'x.onnx')
    with pytest.raises(ValueError, match=r"shape \(100, 128\) is not a "
                       r"multiple of the model's stride 32; try \(96, 128\)"):
        export_detector(config(SSDLITE), None, out, shape=(100, 128))
    with pytest.raises(ValueError, match='opset must be >= 11'):
        export_detector(config(SSDLITE), None, out, opset=10)
    detector = build_detector(config(SSDLITE), init=False).eval()
    detector.bbox_head.test_cfg.nms = dict(type='soft_nms',
                                           iou_threshold=0.5)
    with pytest.raises(UnsupportedDetectorError, match='soft_nms'):
        SingleStageExport(detector)
    assert not osp.exists(out)


def test_runtime_errors_name_the_input(trained, tmp_path, monkeypatch):
    detector = DeployedDetector(trained['model'])
    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'not a png')
    with pytest.raises(ImageLoadError, match=f'image {broken}: cannot be '
                       'decoded'):
        detector.predict(str(broken))
    with pytest.raises(ImageLoadError, match='missing.png: file not found'):
        detector.predict(str(tmp_path / 'missing.png'))
    with pytest.raises(SystemExit, match='broken.png: cannot be decoded'):
        deploy_tool('infer').main([trained['model'], str(broken)])
    with pytest.raises(ValueError, match=r'BGR uint8 \[h, w, 3\], got '
                       r'float64 \[4, 4\]'):
        detector.predict(np.zeros((4, 4)))
    with pytest.raises(ValueError, match='exported for batch 1, got 2'):
        detector.infer(np.zeros((2, 3, 128, 128), np.float32))
    monkeypatch.setitem(sys.modules, 'openvino', None)
    with pytest.raises(RuntimeNotInstalledError,
                       match="runtime 'openvino' needs the openvino package"):
        DeployedDetector(trained['model'], runtime='openvino')
    with pytest.raises(SystemExit, match='openvino package, which is not '
                       'installed'):
        deploy_tool('infer').main([trained['model'], '--runtime', 'openvino',
                                 str(broken)])
    from rexnet_det.deploy.onnx import export_onnx
    from rexnet_det.models import ReXNet
    plain = export_onnx(ReXNet().eval(), str(tmp_path / 'backbone.onnx'),
                        (1, 3, 64, 64))
    with pytest.raises(NotADeployedDetectorError,
                       match='backbone.onnx is not a detector exported by '
                       'rexnet_det'):
        DeployedDetector(plain)


def test_stretch_export_at_another_size_is_verified_at_that_size():
    cfg = with_test_size(config(SSDLITE), [256, 192])
    from mmdet.utils import get_test_pipeline_cfg
    resize = [s for s in get_test_pipeline_cfg(cfg) if s.type == 'Resize']
    assert resize and resize[0].scale == (192, 256)


# --------------------------------- broken files, images and arguments

def tool_error(name, argv):
    """The one ``error: ...`` line a deploy tool exits with
    (``sys.exit(message)``: printed to stderr, exit code 1)."""
    with pytest.raises(SystemExit) as exc:
        deploy_tool(name).main(argv)
    message = exc.value.code
    assert isinstance(message, str) and message.startswith('error: ')
    assert '\n' not in message
    return message


def with_metadata(model, path, **changes):
    """A copy of the ONNX file `model` with metadata entries replaced by
    raw strings (None removes one)."""
    proto = onnx.load(model)
    props = {p.key: p.value for p in proto.metadata_props}
    for key, value in changes.items():
        if value is None:
            props.pop(key)
        else:
            props[key] = value
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, path)
    return path


def png_header_only(path, width, height):
    """A PNG whose header declares `width` x `height` but whose pixel
    data stops after a few rows (a decompression-bomb shape)."""
    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data +
                struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
    rows = zlib.compress(b'\0' * (width * 3 + 1) * 4)
    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack(
            '>IIBBBBB', width, height, 8, 2, 0, 0, 0)) + chunk(b'IDAT', rows)
                + chunk(b'IEND', b''))
    return path


# file name -> what the error says about it
BROKEN_MODELS = {
    'empty.onnx': 'is empty (0 bytes), not an ONNX model',
    'truncated.onnx': 'cannot be read as an ONNX model by',
    'text.onnx': 'cannot be read as an ONNX model by',
    'not_json.onnx': 'metadata is not JSON',
    'no_resize.onnx': "metadata 'resize' must be an object with mode, size",
    'bad_classes.onnx': "metadata 'classes' must be a non-empty list of "
                        'strings, got 5',
    'huge_input.onnx': 'size of two ints in [1, 8192] (resize.size is '
                       '[100000, 100000])',
    'bad_interpolation.onnx': "interpolation 'magic'",
    'masks_claimed.onnx': "metadata says the graph outputs ['dets', "
                          "'labels', 'masks'], but it outputs ['dets', "
                          "'labels']",
}


@pytest.fixture(scope='module')
def broken_models(trained, tmp_path_factory):
    """Real broken files made from the trained export."""
    folder = tmp_path_factory.mktemp('broken_models')
    good = trained['model']
    with open(good, 'rb') as f:
        data = f.read()
    for name, content in (('empty.onnx', b''),
                          ('truncated.onnx', data[:len(data) // 2]),
                          ('text.onnx', b'version https://git-lfs.github.com'
                           b'/spec/v1\noid sha256:0\nsize 1\n')):
        (folder / name).write_bytes(content)
    resize = json.loads(dict((p.key, p.value) for p in onnx.load(
        good).metadata_props)['resize'])
    for name, changes in (
            ('not_json.onnx', dict(classes='[circle')),
            ('no_resize.onnx', dict(resize=None)),
            ('bad_classes.onnx', dict(classes='5')),
            ('huge_input.onnx', dict(resize=json.dumps(
                dict(resize, size=[100000, 100000])))),
            ('bad_interpolation.onnx', dict(resize=json.dumps(
                dict(resize, interpolation='magic')))),
            ('masks_claimed.onnx', dict(masks='true'))):
        with_metadata(good, str(folder / name), **changes)
    return {name: str(folder / name) for name in BROKEN_MODELS}


@pytest.mark.parametrize('runtime', RUNTIMES)
def test_broken_model_files_are_one_named_error(broken_models, trained,
                                                runtime):
    image = osp.join(trained['data'], 'val', '000000.png')
    # the metadata checks do not depend on the runtime; OpenVINO compiles
    # each file it can read (seconds), so it gets the unreadable ones and
    # one with broken metadata
    names = list(BROKEN_MODELS) if runtime == 'ort' else [
        'empty.onnx', 'truncated.onnx', 'text.onnx', 'not_json.onnx']
    for name in names:
        problem = BROKEN_MODELS[name]
        path = broken_models[name]
        with pytest.raises(NotADeployedDetectorError,
                           match=re.escape(problem)) as exc:
            DeployedDetector(path, runtime)
        assert path in str(exc.value)
        message = tool_error('infer', [path, image, '--runtime', runtime])
        assert path in message and problem in message


def test_verify_refuses_broken_files_and_another_checkpoint(
        trained, broken_models, tmp_path):
    message = tool_error('verify', [trained['config'], trained['checkpoint'],
                                    broken_models['truncated.onnx']])
    assert 'truncated.onnx cannot be read as an ONNX model' in message
    # the file was exported from another checkpoint: a verify that says
    # "matched 32%" and exits 0 would let it ship
    from rexnet_det.checkpoint import load_checkpoint_file
    state = load_checkpoint_file(trained['checkpoint'])['state_dict']
    gen = torch.Generator().manual_seed(0)
    other = {k: v + 0.5 * v.std() * torch.randn(v.shape, generator=gen)
             if 'bbox_head.cls' in k and v.is_floating_point() else v
             for k, v in state.items()}
    checkpoint = str(tmp_path / 'other.pth')
    torch.save({'state_dict': other}, checkpoint)
    out = str(tmp_path / 'verify.json')
    message = tool_error('verify', [trained['config'], checkpoint,
                                    trained['model'], '--max-images', '4',
                                    '--json', out])
    assert message.startswith(f'error: {trained["model"]} does not '
                              f'reproduce {trained["config"]} + '
                              f'{checkpoint}: ')
    assert re.search(r'[\d.]+% of \d+ untied detections matched < 99%',
                     message), message
    with open(out) as f:
        saved = json.load(f)
    assert saved['untied'] > 0 and saved['untied_fraction'] < 0.99
    assert saved['failures'] and saved['failures'][0] in message


def test_bad_images_and_thread_counts_are_named(trained, tmp_path, capsys):
    detector = DeployedDetector(trained['model'], threads=1)
    with pytest.raises(InvalidImageError,
                       match=re.escape('image array [0, 0, 3] is empty '
                                       '(0x0 px)')):
        detector.predict(np.zeros((0, 0, 3), np.uint8))
    # refused from the header: 10000 x 10000 x 3 bytes are never allocated
    bomb = png_header_only(str(tmp_path / 'bomb.png'), 10000, 10000)
    with pytest.raises(InvalidImageError, match=re.escape(
            f'image {bomb} has 10000x10000 = 100000000 pixels, more than '
            f'the limit {MAX_IMAGE_PIXELS}')):
        detector.predict(bomb)
    assert bomb in tool_error('infer', [trained['model'], bomb])
    for value in ('100000', '-1'):
        for name, argv in (('infer', [trained['model'], bomb]),
                           ('verify', [trained['config'],
                                       trained['checkpoint'],
                                       trained['model']])):
            with pytest.raises(SystemExit) as exc:
                deploy_tool(name).main(argv + ['--threads', value])
            assert exc.value.code == 2
            assert re.search(rf'--threads must be an int in \[0, \d+\] .*'
                             rf'got {value}', capsys.readouterr().err)
    with pytest.raises(ValueError, match=r'threads must be an int in '
                       r'\[0, \d+\] .*got 100000'):
        DeployedDetector(trained['model'], threads=100000)
