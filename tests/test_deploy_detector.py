"""Single-stage detectors as one ONNX file: graph ops, export of every
supported config, runtime, verification on a briefly trained SSDLite, and
the errors users meet."""
import copy
import functools
import json
import os.path as osp
import sys

import numpy as np
import onnx
import pytest
import torch

from rexnet_det.analysis.busy_weights import busy_weights
from rexnet_det.analysis.detectors import build_detector, load_config
from rexnet_det.datasets import ImageLoadError
from rexnet_det.deploy.compare import match_detections
from rexnet_det.deploy.detector import (EMPTY_LABEL, DeployedDetector,
                                        NotADeployedDetectorError,
                                        RuntimeNotInstalledError,
                                        SingleStageExport,
                                        UnsupportedDetectorError,
                                        export_detector, verify_detector)
from rexnet_det.deploy.detector.ops import (batched_nms_fixed,
                                            delta_xywh_decode,
                                            non_max_suppression,
                                            select_candidates)
from rexnet_det.deploy.detector.resize import rule_from_pipeline
from rexnet_det.deploy.detector.verify import (ready_for_inference,
                                               with_test_size)

from .conftest import load_tool

FASTER_RCNN = 'rexnet_det::faster_rcnn/faster-rcnn_rexnet-1.0x_fpn_1x_coco.py'
RETINANET = 'rexnet_det::retinanet/retinanet_rexnet-1.0x_fpn_1x_coco.py'
SSDLITE = 'rexnet_det::ssdlite/ssdlite_rexnet-1.0x_8xb24-600e_coco.py'
# Every config the export must handle, at small sizes (H, W); our RetinaNet
# has its own test below (keep-ratio resize).
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


@pytest.mark.parametrize('keep_ratio, size', [(False, (64, 96)),
                                              (True, (96, 128))])
def test_resize_rule_reproduces_mmdet_preprocessing(keep_ratio, size):
    """Our canvas, normalised, equals mmdet's pipeline + preprocessor
    output, and the scale factors agree."""
    from mmcv.transforms import Compose
    from mmdet.models.data_preprocessors import DetDataPreprocessor
    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    resize = dict(type='mmdet.Resize', scale=(size[1], size[0]),
                  keep_ratio=keep_ratio)
    pipeline = [dict(type='mmdet.LoadImageFromNDArray'), resize,
                dict(type='mmdet.PackDetInputs')]
    pre = DetDataPreprocessor(mean=mean, std=std, bgr_to_rgb=True,
                              pad_size_divisor=32)
    rule = rule_from_pipeline(pipeline, None, 32, mean)
    assert (rule.mode, rule.size) == (
        'keep_ratio' if keep_ratio else 'stretch', list(size))
    image = np.random.RandomState(0).randint(0, 256, (50, 70, 3), np.uint8)
    data = pre(dict(zip(('inputs', 'data_samples'), zip(*[
        (d['inputs'], d['data_samples']) for d in
        [Compose(pipeline)(dict(img=image, img_id=0))]]))), False)
    prepared = rule.apply(image)
    ours = (torch.from_numpy(prepared.input) -
            torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1,
                                                                       1)
    assert data['inputs'].shape[2:] == prepared.input.shape[1:]
    assert torch.allclose(ours, data['inputs'][0], atol=1e-5)
    meta = data['data_samples'][0].metainfo
    assert prepared.scale_factor == pytest.approx(meta['scale_factor'])
    assert prepared.img_shape == tuple(meta['img_shape'])


# ------------------------------------------------ export of every config

@pytest.mark.parametrize('name, shape', CONFIGS,
                         ids=[c.split('/')[-1][:-3] for c, _ in CONFIGS])
def test_export_matches_pytorch(name, shape, tmp_path):
    detector, checkpoint = busy_detector(name, shape, tmp_path)
    out = str(tmp_path / 'model.onnx')
    cfg = config(name)
    meta = export_detector(cfg, checkpoint, out, shape=shape,
                           dynamic_batch=True)
    assert meta.resize.size == list(shape)
    check_export(detector, cfg, out, meta)


def check_export(detector, cfg, out, meta):
    """The file has standard ops only; the PyTorch wrapper reproduces
    mmdet's predict; onnxruntime reproduces the wrapper (batch 2)."""
    k = cfg.model.test_cfg.max_per_img
    assert meta.max_per_img == k
    assert len(meta.classes) == detector.bbox_head.num_classes
    model = onnx.load(out)
    assert {n.domain for n in model.graph.node} == {''}  # no custom ops
    assert {'NonMaxSuppression', 'TopK'} <= {n.op_type
                                             for n in model.graph.node}
    x = images(1, 2, *meta.resize.size)
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
    """RetinaNet (keep ratio + pad) exports like the SSDs, and when mmdet's
    padded shape equals the canvas the deployed detections equal mmdet's,
    in original pixels."""
    from mmdet.apis import inference_detector
    detector, checkpoint = busy_detector(RETINANET, (128, 160), tmp_path)
    cfg = config(RETINANET)
    for step in cfg.test_dataloader.dataset.pipeline:
        if step.type == 'Resize':
            step.scale = (160, 128)
    out = str(tmp_path / 'retina.onnx')
    meta = export_detector(cfg, checkpoint, out, dynamic_batch=True)
    assert (meta.resize.mode, meta.resize.size) == ('keep_ratio', [128, 160])
    assert meta.resize.pad_value == pytest.approx(meta.mean)
    check_export(detector, cfg, out, meta)
    # 256x320 rescales to exactly the canvas: nothing is padded, so mmdet
    # and the deployed graph see the same input (padding: see the resize
    # rule test and docs/deployment.md)
    image = np.random.RandomState(3).randint(0, 256, (256, 320, 3), np.uint8)
    ref = inference_detector(ready_for_inference(detector, cfg),
                             image).pred_instances
    result = DeployedDetector(out, threads=1).predict(image)
    assert len(ref) == len(result) == 100
    assert result.bboxes[:, 2].max() <= 320
    assert result.bboxes[:, 3].max() <= 256
    match = match_detections((ref.bboxes, ref.scores, ref.labels),
                             (result.bboxes, result.scores, result.labels))
    assert match.fraction >= 0.99 and match.worst_box_diff < 0.5, match


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
    assert match.candidate > 0 and match.fraction >= 0.99
    assert match.worst_box_diff < 0.05
    assert abs(report.map_deployed - report.map_reference) <= 0.001
    assert report.map_reference > 0  # some detections hit the shapes
    assert 'detections matched' in printed and ' ORT' in printed
    with open(out) as f:
        assert json.load(f)['matched'] == match.matched


def test_trained_export_verifies_with_openvino(trained):
    report = verify_detector(trained['config'], trained['checkpoint'],
                             trained['model'], runtime='openvino',
                             threads=1)
    assert report.images == 32 and report.match.reference > 0
    assert report.match.fraction >= 0.99
    assert report.match.worst_box_diff < 0.05
    assert abs(report.map_deployed - report.map_reference) <= 0.001


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
