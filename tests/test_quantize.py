"""INT8 quantization of exported files (tools/deploy/quantize.py,
rexnet_det.deploy.quantize): a briefly trained SSDLite quantized and run
on stock onnxruntime and OpenVINO, its metadata, the FP32 / INT8 side by
side of verify.py, a backbone file, and every refusal."""
import hashlib
import json
import os
import os.path as osp

import numpy as np
import onnx
import pytest
import torch

from rexnet_det.deploy.compare import match_detections
from rexnet_det.deploy.detector import (DeployedDetector,
                                        NotADeployedDetectorError)
from rexnet_det.deploy.quantize import (META_KEY, AlreadyQuantizedError,
                                        CalibrationError, NotAnExportError,
                                        QuantizeOptions, quantize_classifier,
                                        quantize_detector)
from rexnet_det.deploy.quantize.graph import network_nodes
from rexnet_det.utils.io import is_temporary

from .conftest import load_tool

CALIBRATION = 8
# INT8 against FP32 detections of the same file: same label, IoU >= 0.8,
# score within 0.05 (8-bit activations move a 0.5 score by ~1e-2).
IOU_THR, SCORE_TOL = 0.8, 0.05


def quantize_tool(argv):
    return load_tool('deploy/quantize.py').main(argv)


def digest(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope='module')
def int8(trained_ssdlite):
    """The trained SSDLite quantized by the tool with its report."""
    out = osp.join(trained_ssdlite['root'], 'ssdlite.int8.onnx')
    report = osp.join(trained_ssdlite['root'], 'layers.json')
    result = quantize_tool([trained_ssdlite['config'],
                            trained_ssdlite['model'], '--out', out,
                            '--num-images', str(CALIBRATION), '--report',
                            report, '--report-images', '2'])
    return dict(trained_ssdlite, int8=out, result=result, report=report)


def val_images(trained, count):
    return [osp.join(trained['data'], 'val', f'{i:06d}.png')
            for i in range(count)]


def test_int8_ssdlite_pairs_with_fp32_on_stock_onnxruntime(int8):
    fp32 = DeployedDetector(int8['model'], 'ort', 1)
    quantized = DeployedDetector(int8['int8'], 'ort', 1)
    total, matched = 0, 0
    for path in val_images(int8, 16):
        a, b = fp32.predict(path), quantized.predict(path)
        strong = a.scores >= 0.3  # the detections that matter
        match = match_detections(
            (a.bboxes[strong], a.scores[strong], a.labels[strong]),
            (b.bboxes, b.scores, b.labels), IOU_THR, SCORE_TOL)
        total += int(strong.sum())
        matched += match.matched
    assert total > 0  # non-empty: the trained model finds the shapes
    assert matched / total >= 0.9, (matched, total)
    # integer kernels in the file, no custom ops, the post-processing float
    model = onnx.load(int8['int8'])
    ops = {n.op_type for n in model.graph.node}
    assert {'QuantizeLinear', 'DequantizeLinear'} <= ops
    assert all(n.domain in ('', 'ai.onnx') for n in model.graph.node)
    producers = {o: n for n in model.graph.node for o in n.output}
    nms = [n for n in model.graph.node if n.op_type == 'NonMaxSuppression']
    assert nms and all(producers[i].op_type != 'DequantizeLinear'
                       for n in nms for i in n.input if i in producers)
    result = int8['result']
    assert result.nodes > 50 and result.op_counts['Conv'] > 20


def test_int8_runs_on_openvino(int8):
    detections = DeployedDetector(int8['int8'], 'openvino', 1).predict(
        val_images(int8, 1)[0])
    assert len(detections) > 0 and detections.bboxes.shape[1] == 4


def test_int8_keeps_inputs_outputs_and_metadata(int8):
    fp32, quantized = onnx.load(int8['model']), onnx.load(int8['int8'])
    props = {p.key: p.value for p in fp32.metadata_props}
    qprops = {p.key: p.value for p in quantized.metadata_props}
    assert props and set(qprops) == set(props) | {META_KEY}
    assert all(qprops[k] == v for k, v in props.items())
    recorded = json.loads(qprops[META_KEY])
    assert recorded['num_images'] == CALIBRATION
    assert recorded['per_channel'] is True and recorded['method'] == 'minmax'
    for a, b in ((fp32.graph.input, quantized.graph.input),
                 (fp32.graph.output, quantized.graph.output)):
        assert [(v.name, v.type) for v in a] == [(v.name, v.type) for v in b]
    meta = DeployedDetector(int8['int8']).meta
    assert meta.classes == ['circle', 'rectangle', 'triangle', 'ellipse']


def test_layer_report_names_quantized_tensors(int8):
    with open(int8['report']) as f:
        rows = json.load(f)
    assert len(rows) > 20
    finite = [r for r in rows if np.isfinite(r['sqnr_db'])]
    assert finite and all(-1.0 <= r['cosine'] <= 1.0 + 1e-6 for r in rows)
    # worst first; the median tensor keeps most of its signal
    assert finite[0]['sqnr_db'] <= finite[-1]['sqnr_db']
    assert np.median([r['sqnr_db'] for r in finite]) > 15


def test_verify_reports_pytorch_fp32_and_int8(int8, capsys):
    report = load_tool('deploy/verify.py').main([
        int8['config'], int8['checkpoint'], int8['int8'], '--fp32',
        int8['model'], '--max-images', '8', '--threads', '1'])
    printed = capsys.readouterr().out
    assert 'box PT' in printed and ' box F32' in printed and \
        ' box I8' in printed
    assert report.verify.images == 8 and report.verify.match.candidate > 0
    # the FP32 file reproduces PyTorch; the INT8 drop is reported
    assert report.fp32['bbox']['AP'] == pytest.approx(
        report.verify.map_reference, abs=1e-3)
    assert f'{report.drops()["bbox"]:+.4f}' in printed


def test_backbone_file_quantizes_on_an_image_folder(tmp_path, trained_ssdlite):
    from rexnet_det import ReXNet
    from rexnet_det.deploy import export_onnx
    torch.manual_seed(0)
    fp32 = export_onnx(ReXNet(width_mult=0.5, out_indices=(3, 5)).eval(),
                       str(tmp_path / 'backbone.onnx'),
                       input_shape=(1, 3, 64, 64), dynamic=False)
    out = str(tmp_path / 'backbone.int8.onnx')
    folder = osp.join(trained_ssdlite['data'], 'train')
    result = quantize_classifier(folder, fp32, out,
                                 QuantizeOptions(num_images=4))
    import onnxruntime as ort
    x = np.random.RandomState(0).standard_normal((1, 3, 64, 64)).astype(
        np.float32)
    ref = ort.InferenceSession(fp32).run(None, {'input': x})
    got = ort.InferenceSession(out).run(None, {'input': x})
    assert [o.name for o in ort.InferenceSession(out).get_outputs()] == [
        'tap3', 'tap5'] and result.nodes > 0
    assert all(a.shape == b.shape for a, b in zip(ref, got))
    cos = [float(np.dot(a.ravel(), b.ravel()) / np.linalg.norm(a) /
                 np.linalg.norm(b)) for a, b in zip(ref, got)]
    assert min(cos) > 0.9, cos


def test_post_processing_stays_out_of_the_network_region(trained_ssdlite):
    model = onnx.load(trained_ssdlite['model'])
    region = {n.op_type for n in network_nodes(model)}
    assert 'Conv' in region
    assert not region & {'NonMaxSuppression', 'TopK', 'Softmax', 'Exp'}


# ------------------------------------------------------------------ refusals

def test_refuses_a_file_we_did_not_export(tmp_path, trained_ssdlite):
    path = str(tmp_path / 'foreign.onnx')
    torch.onnx.export(torch.nn.Conv2d(3, 4, 3).eval(), torch.zeros(1, 3, 8, 8),
                      path, dynamo=False, input_names=['x'])
    with pytest.raises(NotADeployedDetectorError, match='foreign.onnx'):
        quantize_detector(trained_ssdlite['config'], path,
                          str(tmp_path / 'out.onnx'))
    with pytest.raises(NotAnExportError, match='foreign.onnx.*tap0'):
        quantize_classifier(trained_ssdlite['data'], path,
                            str(tmp_path / 'out.onnx'))
    with pytest.raises(NotAnExportError, match='detector file'):
        quantize_classifier(trained_ssdlite['data'],
                            trained_ssdlite['model'],
                            str(tmp_path / 'out.onnx'))


def test_refuses_an_already_quantized_file(int8, tmp_path):
    with pytest.raises(SystemExit, match='ssdlite.int8.onnx is already '
                       'quantized'):
        quantize_tool([int8['config'], int8['int8'], '--out',
                       str(tmp_path / 'twice.onnx')])
    assert not os.listdir(tmp_path)
    with pytest.raises(AlreadyQuantizedError, match='QuantizeLinear'):
        quantize_detector(int8['config'], int8['int8'],
                          str(tmp_path / 'twice.onnx'))


@pytest.mark.parametrize('count, message', [
    (0, 'must be >= 1, got 0'),
    (65, '65 calibration images requested but .*instances_train.json has '
     'only 64')])
def test_refuses_a_bad_image_count(trained_ssdlite, tmp_path, count,
                                   message):
    with pytest.raises(CalibrationError, match=message):
        quantize_detector(trained_ssdlite['config'],
                          trained_ssdlite['model'], str(tmp_path / 'o.onnx'),
                          QuantizeOptions(num_images=count))
    assert not os.listdir(tmp_path)


def test_refuses_a_missing_dataset(trained_ssdlite, tmp_path):
    from mmengine.config import Config
    cfg = Config.fromfile(trained_ssdlite['config'])
    cfg.train_dataloader.dataset.data_root = str(tmp_path / 'nowhere') + '/'
    with pytest.raises(CalibrationError,
                       match=r'train_dataloader.dataset annotation file '
                       r'.*nowhere/annotations/instances_train.json'):
        quantize_detector(cfg, trained_ssdlite['model'],
                          str(tmp_path / 'o.onnx'))
    with pytest.raises(CalibrationError, match='image folder .*nowhere'):
        quantize_classifier(str(tmp_path / 'nowhere'),
                            trained_ssdlite['model'], str(tmp_path / 'o.onnx'))


def test_refuses_out_equal_to_input_and_keeps_the_fp32_file(
        trained_ssdlite):
    model = trained_ssdlite['model']
    before = digest(model)
    with pytest.raises(SystemExit, match='--out .*ssdlite.onnx.* is the '
                       'input file'):
        quantize_tool([trained_ssdlite['config'], model, '--out', model,
                       '--num-images', '1'])
    assert digest(model) == before
    assert not [n for n in os.listdir(osp.dirname(model))
                if is_temporary(n)]


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="method must be one of .*'best'"):
        QuantizeOptions(method='best')
    with pytest.raises(ValueError, match="activations type .*'u4'"):
        QuantizeOptions(activations='u4')
    with pytest.raises(ValueError, match=r"float_nodes '\(' is not"):
        QuantizeOptions(float_nodes='(')
