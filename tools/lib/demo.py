"""The main job of ``make demo`` (``tools/demo.py`` is its command line).

Generates the built-in shapes dataset (COCO format, polygon masks), trains a
Mask R-CNN with a ReXNet backbone on it from scratch on the CPU (progress
line on the console, full mmengine log in the work dir), evaluates the
validation split with the 12 COCO metrics for boxes and masks, draws the
predicted boxes and masks on validation images, then deploys it: exports
one ONNX file (RPN, RoI heads and mask pasting inside), evaluates that file
with onnxruntime on the same validation split (``verify_detector``: bbox
and segm mAP of PyTorch and onnxruntime side by side, matched detections,
worst mask IoU, latency per image) and draws its predictions. Last, it
quantizes that file to INT8 and prints PyTorch, FP32 and INT8 mAP and the
latency of both files (:func:`~.demo_int8.int8_step`). It says where
everything went and fails (exit 1) below the mAP target or when the
deployed file misses the parity thresholds of ``tools/deploy/verify.py``
(:class:`~rexnet_det.deploy.detector.verify.ParityThresholds`).

The detector is ``configs/demo/mask-rcnn_rexnet-1.0x_fpn_shapes.py``, which
inherits the COCO config ``configs/mask_rcnn/mask-rcnn_rexnet-1.0x_fpn_1x_
coco.py`` and shrinks it for a 2-core CPU.
"""
import contextlib
import io
import json
import logging
import os
import os.path as osp
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Optional

from rexnet_det.deploy.quantize.accuracy import MAX_MAP_DROP
from rexnet_det.utils.configs import load_config

from .demo_int8 import int8_step

DEFAULT_CONFIG = 'rexnet_det::demo/mask-rcnn_rexnet-1.0x_fpn_shapes.py'
#: The demo's goal, judged below: bbox mAP the briefly trained Mask R-CNN
#: must reach on its own synthetic val split (the deployed file must also
#: pass verify.py's parity thresholds).
DEMO_BBOX_MAP = 0.30


@dataclass
class DemoOptions:
    """What ``tools/demo.py`` passes (its command-line flags)."""
    out_dir: str = 'work_dirs/demo'
    config: str = DEFAULT_CONFIG
    num_train: int = 400
    num_val: int = 100
    size: int = 128
    #: Below 1: non-square images (landscape and portrait, short side
    #: min_aspect-1 of the long one), as real photos; the deployed graph
    #: pads each one as mmdet does. 1: square images.
    min_aspect: float = 0.6
    epochs: Optional[int] = None
    seed: int = 0
    threads: int = 1
    num_vis: int = 8


def section(title: str) -> None:
    print(f'\n== {title} ' + '=' * max(0, 66 - len(title)), flush=True)


def build_cfg(args: DemoOptions, data_root: str, work_dir: str):
    """The demo config with the data, work dir, seed and epochs set."""
    cfg = load_config(args.config)
    ann_val = osp.join(data_root, 'annotations/instances_val.json')
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].dataset.data_root = data_root + '/'
    for key in ('val_evaluator', 'test_evaluator'):
        cfg[key].ann_file = ann_val
    # CocoMetric keeps its results files here (merged into results.json).
    cfg.val_evaluator.outfile_prefix = osp.join(work_dir, 'predictions')
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=args.seed)
    if args.epochs is not None:
        cfg.train_cfg.max_epochs = args.epochs
        cfg.train_cfg.val_interval = args.epochs
        cfg.default_hooks.checkpoint.interval = args.epochs
        for sched in cfg.param_scheduler:
            if sched.get('by_epoch', True) and 'T_max' in sched:
                sched.T_max = sched.end = args.epochs
    return cfg


def quiet_console(runner) -> None:
    """mmengine's INFO and WARNING lines go to the log file only
    (the console handler was created while stdout was captured)."""
    for handler in runner.logger.handlers:
        if type(handler) is logging.StreamHandler:
            handler.setStream(sys.stdout)
            handler.setLevel(logging.ERROR)


def draw_predictions(runner, cfg, data_root: str, vis_dir: str, num: int,
                     scale: int = 3) -> list:
    """Draw predicted boxes and masks on the first `num` val images,
    upscaled `scale` times so that labels stay readable."""
    import mmcv
    import numpy as np
    import torch.nn.functional as F
    from mmdet.apis import inference_detector
    from mmdet.visualization import DetLocalVisualizer
    model = runner.model
    model.cfg = cfg
    model.eval()
    visualizer = DetLocalVisualizer.get_current_instance()
    visualizer.dataset_meta = runner.val_dataloader.dataset.metainfo
    os.makedirs(vis_dir, exist_ok=True)
    with open(osp.join(data_root, 'annotations/instances_val.json')) as f:
        images = json.load(f)['images'][:num]
    paths, tiles = [], []
    for im in images:
        img_path = osp.join(data_root, 'val', im['file_name'])
        result = inference_detector(model, img_path)
        pred = result.pred_instances
        pred.bboxes = pred.bboxes * scale
        if len(pred) and 'masks' in pred:
            pred.masks = F.interpolate(pred.masks[None].float(),
                                       scale_factor=scale)[0] > 0.5
        raw = mmcv.imrescale(mmcv.imread(img_path), scale,
                             interpolation='nearest')
        out_file = osp.join(vis_dir, im['file_name'])
        visualizer.add_datasample(im['file_name'],
                                  mmcv.imconvert(raw, 'bgr', 'rgb'), result,
                                  draw_gt=False, pred_score_thr=0.5,
                                  out_file=out_file)
        paths.append(out_file)
        tiles.append(np.concatenate([raw, mmcv.imread(out_file)], 1))
    if tiles:  # input | prediction, two pairs per row
        cols = 2
        # non-square images: pad every tile to the largest (black)
        h = max(tile.shape[0] for tile in tiles)
        w = max(tile.shape[1] for tile in tiles)
        tiles = [np.pad(tile, ((0, h - tile.shape[0]),
                               (0, w - tile.shape[1]), (0, 0)))
                 for tile in tiles]
        blank = [np.zeros_like(tiles[0])]
        rows = [np.concatenate(tiles[i:i + cols] + blank * (
            cols - len(tiles[i:i + cols])), 1)
            for i in range(0, len(tiles), cols)]
        grid = osp.join(vis_dir, 'grid.png')
        mmcv.imwrite(np.concatenate(rows, 0), grid)
        paths.insert(0, grid)
    return paths


@dataclass
class DeployOutcome:
    """What the deploy step produced."""
    onnx_path: str
    vis_dir: str
    report: object  # VerifyReport
    ok: bool


def deploy_and_verify(cfg, checkpoint: str, out_dir: str, threads: int,
                      num_vis: int) -> DeployOutcome:
    """Export the trained detector, evaluate the ONNX file with onnxruntime
    on the validation split next to PyTorch, print the tables and draw the
    deployed predictions on the first `num_vis` validation images."""
    from rexnet_det.deploy.detector import (DeployedDetector, export_detector,
                                   verify_detector)
    from rexnet_det.deploy.detector.visualize import draw_detections
    from rexnet_det.evaluation import format_metrics
    onnx_path = osp.join(out_dir, 'mask-rcnn.onnx')
    t0 = time.perf_counter()
    meta = export_detector(cfg, checkpoint, onnx_path)
    h, w = meta.resize.size or ('H', 'W')
    print(f'exported {short(onnx_path)} ({osp.getsize(onnx_path) / 1e6:.1f}'
          f' MB, input 1x3x{h}x{w}, outputs dets/labels/masks, K='
          f'{meta.max_per_img}) in {time.perf_counter() - t0:.0f} s',
          flush=True)
    t0 = time.perf_counter()
    report = verify_detector(cfg, checkpoint, onnx_path, threads=threads)
    print(f'evaluated PyTorch and onnxruntime on {report.images} validation '
          f'images in {time.perf_counter() - t0:.0f} s')
    print(format_metrics({'box PT': report.metrics['reference'],
                          'box ORT': report.metrics['deployed'],
                          'seg PT': report.segm_metrics['reference'],
                          'seg ORT': report.segm_metrics['deployed']}))
    print(report.summary())
    print(f'latency per image ({threads} thread(s), reading and resizing '
          f'included): PyTorch {report.ms_per_image("reference"):.1f} ms, '
          f'onnxruntime {report.ms_per_image("deployed"):.1f} ms')
    from rexnet_det.deploy.detector.verify import ParityThresholds
    diffs = (report.map_deployed - report.map_reference,
             report.segm_map_deployed - report.segm_map_reference)
    failures = report.failures()
    ok = not failures
    vis_dir = osp.join(out_dir, 'vis_onnx')
    os.makedirs(vis_dir, exist_ok=True)
    deployed = DeployedDetector(onnx_path, 'ort', threads)
    data_root = cfg.test_dataloader.dataset.data_root
    with open(cfg.test_evaluator.ann_file) as f:
        images = json.load(f)['images'][:num_vis]
    from rexnet_det.deploy.detector import read_image
    for im in images:
        image = read_image(osp.join(data_root, 'val', im['file_name']))
        draw_detections(image, deployed.predict(image), deployed.classes,
                        osp.join(vis_dir, im['file_name']),
                        deployed.meta.palette, 0.5)
    print(f'deployed mAP vs PyTorch: bbox {diffs[0]:+.4f}, segm '
          f'{diffs[1]:+.4f}; parity ({ParityThresholds().describe()}): '
          f'{"met" if ok else "NOT met: " + "; ".join(failures)}); '
          f'{len(images)} images drawn by onnxruntime in {short(vis_dir)}')
    return DeployOutcome(onnx_path, vis_dir, report, ok)


def short(path: str) -> str:
    """Path relative to the working directory when it is below it."""
    rel = osp.relpath(path)
    return path if rel.startswith('..') else rel


def run_demo(args: DemoOptions) -> int:
    """Run the demo; returns the exit code (1 below the mAP target)."""
    t_start = time.perf_counter()
    warnings.filterwarnings('ignore')
    import torch
    torch.set_num_threads(args.threads)
    from mmengine.runner import Runner

    from rexnet_det.datasets.synthetic import SyntheticCocoSpec, make_synthetic_coco
    from rexnet_det.evaluation import (evaluate_coco, format_metrics,
                              merge_coco_results, write_results_atomic)
    from rexnet_det.utils.progress import ProgressHook

    out_dir = osp.abspath(args.out_dir)
    data_root = osp.join(out_dir, 'data')
    work_dir = osp.join(out_dir, 'train')
    vis_dir = osp.join(out_dir, 'vis')
    print('rexnet_det demo: Mask R-CNN + ReXNet-1.0x FPN trained from '
          f'scratch on CPU ({args.threads} torch thread(s), torch '
          f'{torch.__version__})')

    section('1/5 data')
    t0 = time.perf_counter()
    make_synthetic_coco(data_root, args.num_train, args.num_val,
                        seed=args.seed, spec=SyntheticCocoSpec(
                            size=args.size, min_aspect=args.min_aspect))
    print(f'{args.num_train} train / {args.num_val} val images of '
          f'{args.size} px (long side; short side >= '
          f'{args.min_aspect:g} x that), 4 classes (circle, rectangle, '
          f'triangle, ellipse) with polygon masks -> {data_root} '
          f'({time.perf_counter() - t0:.0f} s)')

    section('2/5 train')
    cfg = build_cfg(args, data_root, work_dir)
    # The console gets a progress line; mmengine's config dump, environment
    # and per-iteration logs go to the log file.
    with contextlib.redirect_stdout(io.StringIO()):
        runner = Runner.from_cfg(cfg)
    quiet_console(runner)
    runner.register_hook(ProgressHook(stream=sys.stdout), 'VERY_LOW')
    n_params = sum(p.numel() for p in runner.model.parameters()) / 1e6
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints
        iters_per_epoch = len(runner.train_dataloader)
    print(f'config {args.config}: '
          f'{n_params:.2f}M parameters, {cfg.train_cfg.max_epochs} epochs x '
          f'{iters_per_epoch} iterations of '
          f'{cfg.train_dataloader.batch_size} images', flush=True)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints
        runner.train()  # validates once at the end (COCO metrics)
    t_train = time.perf_counter() - t0
    print(f'trained and validated in {t_train:.0f} s', flush=True)

    section('3/5 COCO evaluation (validation split)')
    prefix = cfg.val_evaluator.outfile_prefix
    with open(f'{prefix}.bbox.json') as f:
        results = json.load(f)
    with open(f'{prefix}.segm.json') as f:
        results = merge_coco_results(results, json.load(f))
    results_file = osp.join(out_dir, 'results.json')
    write_results_atomic(results, results_file)
    metrics = evaluate_coco(results, cfg.val_evaluator.ann_file,
                            ['bbox', 'segm'])
    with open(osp.join(out_dir, 'metrics.json'), 'w') as f:
        json.dump(metrics, f, indent=1)
    print(format_metrics(metrics))

    section('4/5 pictures')
    pictures = draw_predictions(runner, cfg, data_root, vis_dir,
                                args.num_vis)
    print(f'{len(pictures) - 1} validation images with predicted boxes and '
          f'masks (score >= 0.5) in {short(vis_dir)}; input | prediction '
          f'overview: {short(pictures[0])}')

    section('5/5 deploy: ONNX on onnxruntime vs PyTorch')
    ckpt = osp.join(work_dir, f'epoch_{cfg.train_cfg.max_epochs}.pth')
    deploy = deploy_and_verify(build_cfg(args, data_root, work_dir), ckpt,
                               out_dir, args.threads, args.num_vis)

    section('INT8: quantized ONNX vs FP32 and PyTorch')
    int8 = int8_step(build_cfg(args, data_root, work_dir), deploy.onnx_path,
                     deploy.report, args.threads)

    bbox_map, segm_map = metrics['bbox']['AP'], metrics['segm']['AP']
    wall = time.perf_counter() - t_start
    section('summary')
    print(f'bbox mAP@[.5:.95] {bbox_map:.3f}   segm mAP@[.5:.95] '
          f'{segm_map:.3f}   (target bbox mAP >= {DEMO_BBOX_MAP:.2f}: '
          f'{"met" if bbox_map >= DEMO_BBOX_MAP else "NOT met"})')
    print(f'wall time {wall / 60:.1f} min (training {t_train / 60:.1f} min)')
    print(f'data        {short(data_root)}')
    print(f'checkpoint  {short(ckpt)}')
    print(f'log         {short(runner.log_dir)}')
    print(f'results     {short(results_file)} (COCO format)')
    print(f'metrics     {short(osp.join(out_dir, "metrics.json"))}')
    print(f'pictures    {short(vis_dir)}')
    print(f'onnx        {short(deploy.onnx_path)} (onnxruntime pictures: '
          f'{short(deploy.vis_dir)})')
    print(f're-evaluate: python tools/analysis/coco_eval.py '
          f'{short(results_file)} {short(cfg.val_evaluator.ann_file)} '
          f'--types bbox segm')
    print(f'deployed    onnxruntime bbox mAP {deploy.report.map_deployed:.3f}'
          f' / segm mAP {deploy.report.segm_map_deployed:.3f} vs PyTorch '
          f'{deploy.report.map_reference:.3f} / '
          f'{deploy.report.segm_map_reference:.3f} (parity '
          f'{"met" if deploy.ok else "NOT met"})')
    print(f'INT8        {short(int8.path)}: bbox mAP '
          f'{int8.metrics["bbox"]["AP"]:.3f} / segm mAP '
          f'{int8.metrics["segm"]["AP"]:.3f} (drop vs PyTorch within '
          f'{MAX_MAP_DROP}: {"yes" if int8.ok else "NO"}); '
          f'{int8.ms["fp32"]:.1f} -> {int8.ms["int8"]:.1f} ms per image')
    return 0 if bbox_map >= DEMO_BBOX_MAP and deploy.ok and int8.ok else 1
