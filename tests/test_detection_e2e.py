"""tools/train.py -> tools/test.py -> tools/analysis/coco_eval.py on a tiny
generated dataset, for Mask R-CNN (bbox + segm) and SSDLite (bbox). The
tools' main() run in-process (a subprocess would only add start-up time)."""
import glob
import json
import os.path as osp
import uuid

import pytest
from pycocotools import mask as mask_utils

from rexnet_det.evaluation import METRIC_NAMES, evaluate_coco
from tests.conftest import ROOT, load_tool

MASK_RCNN = osp.join(ROOT, 'configs/demo/mask-rcnn_rexnet-1.0x_fpn_shapes.py')
SSDLITE = osp.join(ROOT, 'configs/demo/ssdlite_rexnet-1.0x_shapes.py')


@pytest.fixture(scope='module')
def data(make_shapes):
    return make_shapes(8, 4, 96, 0)


def data_options(root, batch_size=4):
    ann = osp.join(root, 'annotations/instances_val.json')
    opts = [f'{k}.dataset.data_root={root}/' for k in
            ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    opts += [f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}',
             f'train_dataloader.batch_size={batch_size}',
             'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
             'default_hooks.checkpoint.interval=1',
             # Runners in one process share mmdet's visualizer (fixed name
             # 'visualizer') and, within a second, the timestamp-named
             # logger: give each run its own
             f'experiment_name=e2e_{uuid.uuid4().hex[:12]}',
             f'visualizer.name=e2e_{uuid.uuid4().hex[:12]}']
    return opts


def run(capsys, tool, args):
    """Run tools/<tool>'s main(args) in-process; return what it printed."""
    capsys.readouterr()
    load_tool(tool).main(args)
    return capsys.readouterr().out


def val_scalars(work_dir):
    """The validation metrics the Runner logged (last evaluation)."""
    (scalars, ) = glob.glob(osp.join(work_dir, '*', 'vis_data',
                                     'scalars.json'))
    with open(scalars) as f:
        rows = [json.loads(line) for line in f]
    evals = [r for r in rows if any(k.startswith('coco/') for k in r)]
    assert evals, rows
    return evals[-1]


def table_rows(text):
    return [line for line in text.splitlines() if line.startswith(('AP @',
                                                                   'AR @'))]


def test_mask_rcnn_train_test_and_coco_eval(data, tmp_path, capsys):
    work = str(tmp_path / 'mask_rcnn')
    run(capsys, 'train.py', [MASK_RCNN, '--work-dir', work, '--cfg-options']
        + data_options(data))
    logged = val_scalars(work)
    ckpt = osp.join(work, 'epoch_1.pth')
    assert osp.isfile(ckpt)

    out = str(tmp_path / 'results.json')
    test_out = run(capsys, 'test.py', [MASK_RCNN, ckpt, '--work-dir', work,
                                       '--out', out, '--cfg-options'] +
                   data_options(data))
    with open(out) as f:
        results = json.load(f)
    assert results, 'the model predicted nothing'
    assert {'image_id', 'category_id', 'bbox', 'score', 'segmentation',
            'mask_score'} <= set(results[0])
    assert {r['image_id'] for r in results} <= {1, 2, 3, 4}
    test_rows = table_rows(test_out)
    assert len(test_rows) == 12

    ann = osp.join(data, 'annotations/instances_val.json')
    eval_out = run(capsys, 'analysis/coco_eval.py',
                   [out, ann, '--types', 'bbox', 'segm'])
    assert table_rows(eval_out) == test_rows
    # ... and both agree with the Runner's own CocoMetric (3 decimals);
    # Mask R-CNN keeps <= 100 detections, so maxDets do not matter.
    metrics = evaluate_coco(out, ann, ['bbox', 'segm'])
    for iou_type in ('bbox', 'segm'):
        for ours, theirs in zip(METRIC_NAMES[:6], ('mAP', 'mAP_50', 'mAP_75',
                                                   'mAP_s', 'mAP_m',
                                                   'mAP_l')):
            value = metrics[iou_type][ours]
            expected = logged[f'coco/{iou_type}_{theirs}']
            # -1: no object of that size in the 96 px images (COCO)
            assert abs(round(value, 3) - expected) < 1.5e-3 or \
                (value == -1 and expected == -1), (iou_type, ours)


def test_ssdlite_validates_with_coco_metrics(data, tmp_path, capsys):
    """SSDLite runs validation (SSDLiteHead; stock SSDHead raises, see
    tests/test_upstream.py) and reports COCO bbox metrics."""
    work = str(tmp_path / 'ssdlite')
    run(capsys, 'train.py', [SSDLITE, '--work-dir', work, '--cfg-options']
        + data_options(data))
    logged = val_scalars(work)
    names = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')
    assert all(f'coco/bbox_{n}' in logged for n in names)
    assert 'coco/segm_mAP' not in logged
    ckpt = osp.join(work, 'epoch_1.pth')
    out = str(tmp_path / 'results.json')
    run(capsys, 'test.py', [SSDLITE, ckpt, '--work-dir', work, '--out', out,
                            '--cfg-options'] + data_options(data))
    with open(out) as f:
        results = json.load(f)
    assert results, 'the model predicted nothing'
    assert {'bbox', 'score'} <= set(results[0]) and \
        'segmentation' not in results[0]


def _gt_as_results(ann_file, jitter=0.0):
    with open(ann_file) as f:
        coco = json.load(f)
    size = {im['id']: (im['height'], im['width']) for im in coco['images']}
    results = []
    for ann in coco['annotations']:
        h, w = size[ann['image_id']]
        rle = mask_utils.merge(mask_utils.frPyObjects(ann['segmentation'],
                                                      h, w))
        rle['counts'] = rle['counts'].decode()
        x, y, bw, bh = ann['bbox']
        results.append(dict(image_id=ann['image_id'],
                            category_id=ann['category_id'],
                            bbox=[x + jitter * bw, y, bw, bh], score=0.9,
                            segmentation=rle))
    return results


def test_coco_eval_scores_ground_truth_as_perfect(data):
    ann = osp.join(data, 'annotations/instances_val.json')
    perfect = evaluate_coco(_gt_as_results(ann), ann, ['bbox', 'segm'])
    assert perfect['bbox']['AP'] == pytest.approx(1.0)
    assert perfect['segm']['AP'] == pytest.approx(1.0)
    assert perfect['bbox']['AR100'] == pytest.approx(1.0)
    # boxes shifted by 30% of their width: IoU 0.54 -> only AP50 survives
    shifted = evaluate_coco(_gt_as_results(ann, 0.3), ann, ['bbox'])
    assert shifted['bbox']['AP50'] == pytest.approx(1.0)
    assert shifted['bbox']['AP75'] == pytest.approx(0.0)
    assert 0 < shifted['bbox']['AP'] < 0.2


def test_coco_eval_errors(data, tmp_path):
    ann = osp.join(data, 'annotations/instances_val.json')
    boxes_only = [dict(r, segmentation=None) for r in _gt_as_results(ann)]
    for r in boxes_only:
        del r['segmentation']
    with pytest.raises(ValueError, match='segm evaluation needs a '
                       '"segmentation"'):
        evaluate_coco(boxes_only, ann, ['segm'])
    with pytest.raises(ValueError, match='iou_types must be'):
        evaluate_coco(boxes_only, ann, ['keypoints'])
    with pytest.raises(FileNotFoundError, match='results file not found'):
        evaluate_coco(str(tmp_path / 'missing.json'), ann)
    assert evaluate_coco([], ann)['bbox'] == {n: 0.0 for n in METRIC_NAMES}


def test_tool_arguments_match_mmdet(tmp_path):
    train = load_tool('train.py')
    args = train.parse_args([MASK_RCNN, '--resume'])
    assert args.resume == 'auto'
    cfg = train.build_cfg(args)
    assert cfg.resume is True and cfg.load_from is None
    assert cfg.work_dir == './work_dirs/mask-rcnn_rexnet-1.0x_fpn_shapes'
    cfg = train.build_cfg(train.parse_args(
        [MASK_RCNN, '--amp', '--work-dir', str(tmp_path), '--cfg-options',
         'train_dataloader.batch_size=3']))
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.train_dataloader.batch_size == 3
    assert cfg.work_dir == str(tmp_path)
    with pytest.raises(FileNotFoundError, match='--resume checkpoint not '
                       'found: nope.pth'):
        train.build_cfg(train.parse_args([MASK_RCNN, '--resume',
                                          'nope.pth']))
    with pytest.raises(FileNotFoundError, match='config file not found: '
                       'no.py'):
        train.build_cfg(train.parse_args(['no.py']))

    test = load_tool('test.py')
    ckpt = tmp_path / 'c.pth'
    ckpt.write_bytes(b'')
    cfg = test.build_cfg(test.parse_args(
        [MASK_RCNN, str(ckpt), '--show-dir', 'vis']))
    assert cfg.load_from == str(ckpt)
    assert cfg.default_hooks.visualization.draw is True
    assert cfg.default_hooks.visualization.test_out_dir == 'vis'
    with pytest.raises(ValueError, match='--out must end with .json'):
        test.build_cfg(test.parse_args([MASK_RCNN, str(ckpt), '--out',
                                        'r.txt']))
    with pytest.raises(FileNotFoundError, match='checkpoint file not found'):
        test.build_cfg(test.parse_args([MASK_RCNN, 'none.pth']))
