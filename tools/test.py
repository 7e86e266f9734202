"""Test a detector checkpoint: a thin wrapper over mmengine's Runner.

The command line is mmdet's ``tools/test.py``::

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
        [--show-dir DIR] [--compile [{plain,freezing}]]
        [--cfg-options KEY=VALUE ...] [--launcher {none,pytorch,slurm,mpi}]

``--out results.json`` writes the predictions as one COCO results file
(boxes, and masks for instance segmentation models) and prints the 12 COCO
metrics per IoU type; ``tools/analysis/coco_eval.py`` evaluates that file
again. ``--out results.pkl`` dumps mmdet's raw predictions as mmdet does.
``--compile`` runs backbone, neck and dense heads compiled by
:func:`rexnet_det.models.compile_for_inference` (``freezing``: inductor's).
"""
import argparse
import os
import os.path as osp
import sys
import tempfile

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import rexnet_det  # noqa: E402,F401  registers the models and `rexnet_det::`
from mmengine.config import Config, ConfigDict, DictAction  # noqa: E402
from mmengine.dist import get_rank  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from rexnet_det.checkpoint import require_regular_file  # noqa: E402
from rexnet_det.evaluation.coco import (evaluate_coco,  # noqa: E402
                                        format_metrics, merge_coco_results,
                                        write_results_atomic)
from rexnet_det.models import (check_neck_channels,  # noqa: E402
                               compile_for_inference)
from rexnet_det.utils.cli import load_tool_config  # noqa: E402
from rexnet_det.utils.dist import setup_cpu_distributed  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs')
    parser.add_argument(
        '--out', help='write predictions: a .json COCO results file (and '
        'print COCO metrics) or a .pkl of raw predictions')
    parser.add_argument('--show', action='store_true',
                        help='show prediction results in a window')
    parser.add_argument('--show-dir',
                        help='save images with predictions drawn here '
                        '(relative to the work dir\'s timestamp folder)')
    parser.add_argument('--wait-time', type=float, default=2,
                        help='the interval of show (s)')
    parser.add_argument('--compile', nargs='?', const='plain',
                        choices=['plain', 'freezing'],
                        help='run compiled (torch.compile, inductor)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, KEY=VALUE')
    parser.add_argument('--launcher',
                        choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def _coco_metric_cfg(cfg: Config) -> ConfigDict:
    """The test evaluator's CocoMetric (the one that knows the ann file)."""
    evaluator = cfg.test_evaluator
    metrics = evaluator if isinstance(evaluator, list) else [evaluator]
    coco = [m for m in metrics if m.get('type') == 'CocoMetric']
    if len(coco) != 1:
        raise ValueError('--out FILE.json needs exactly one CocoMetric in '
                         f'test_evaluator, found {len(coco)}')
    return coco[0]


def build_cfg(args: argparse.Namespace) -> Config:
    """Load the config and apply the command-line settings."""
    if args.out and not args.out.endswith(('.json', '.pkl', '.pickle')):
        raise ValueError(f'--out must end with .json, .pkl or .pickle, got '
                         f'{args.out!r}')
    cfg = load_tool_config(args.config, args.launcher, args.cfg_options,
                           args.work_dir)
    if '://' not in args.checkpoint:
        require_regular_file(args.checkpoint)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        vis = cfg.default_hooks.get('visualization')
        if vis is None:
            raise ValueError('--show/--show-dir need a "visualization" hook '
                             'in default_hooks')
        vis['draw'] = True
        if args.show:
            vis['show'] = True
            vis['wait_time'] = args.wait_time
        if args.show_dir:
            vis['test_out_dir'] = args.show_dir
    return cfg


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = build_cfg(args)
    # Fail before any work if a neck expects other channels than the taps.
    check_neck_channels(cfg)
    tmp_dir = None
    if args.out and args.out.endswith('.json'):
        # CocoMetric writes <prefix>.bbox.json (and .segm.json); they are
        # merged into --out after the test.
        tmp_dir = tempfile.TemporaryDirectory(
            dir=osp.dirname(osp.abspath(args.out)) or None)
        metric = _coco_metric_cfg(cfg)
        metric.outfile_prefix = osp.join(tmp_dir.name, 'results')
        ann_file = metric.ann_file
    setup_cpu_distributed(cfg, args.launcher)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg \
        else RUNNERS.build(cfg)
    if args.compile:  # in place, so the checkpoint still loads into it
        compile_for_inference(getattr(runner.model, 'module', runner.model)
                              .eval(), freezing=args.compile == 'freezing')
    if args.out and not args.out.endswith('.json'):
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(
            DumpDetResults(out_file_path=args.out))
    runner.test()

    if tmp_dir is not None and get_rank() == 0:
        prefix = osp.join(tmp_dir.name, 'results')
        import json
        with open(f'{prefix}.bbox.json') as f:
            results = json.load(f)
        types = ['bbox']
        if osp.isfile(f'{prefix}.segm.json'):
            with open(f'{prefix}.segm.json') as f:
                results = merge_coco_results(results, json.load(f))
            types.append('segm')
        write_results_atomic(results, args.out)
        tmp_dir.cleanup()
        print(f'COCO results ({len(results)} detections) written to '
              f'{args.out}')
        print(format_metrics(evaluate_coco(results, ann_file, types)))


if __name__ == '__main__':
    main()
