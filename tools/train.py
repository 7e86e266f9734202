"""Train a detector with a config: a thin wrapper over mmengine's Runner.

The command line is mmdet's ``tools/train.py``::

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--resume-reset-schedule] [--resume-reset-optimizer]
        [--auto-scale-lr] [--compile [BACKEND]] [--cfg-options KEY=VALUE ...]
        [--launcher {none,pytorch,slurm,mpi}]

``--resume`` alone resumes from the latest checkpoint in the work dir;
``--resume CKPT`` resumes from that file; a checkpoint whose optimizer or
schedulers do not fit the config is refused unless
``--resume-reset-schedule`` / ``--resume-reset-optimizer`` says to start
them afresh (docs/reliability.md). ``--compile`` sets mmengine's
``cfg.compile`` (``torch.compile`` of the model's ``train_step``; inductor
unless a backend is named); an unusable backend fails before any work.
``rexnet_det`` is imported before the config is parsed, so ``rexnet_det::``
base configs resolve. Without CUDA,
``--launcher pytorch`` (tools/dist_train.sh) trains with gloo on CPU.
"""
import argparse
import os
import os.path as osp
import sys

# Make the repository importable when the package is not installed.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import rexnet_det  # noqa: E402,F401  registers the models and `rexnet_det::`
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from rexnet_det.checkpoint import require_regular_file  # noqa: E402
from rexnet_det.models import (check_compile_backend,  # noqa: E402
                               check_neck_channels)
from rexnet_det.utils.cli import load_tool_config  # noqa: E402
from rexnet_det.utils.dist import setup_cpu_distributed  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true',
                        help='enable automatic-mixed-precision training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the LR by the actual batch size')
    parser.add_argument(
        '--compile', nargs='?', const='inductor', metavar='BACKEND',
        help='train with torch.compile (mmengine cfg.compile); BACKEND '
        'defaults to inductor')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint; without a path, resume from the '
        'latest checkpoint in the work dir')
    parser.add_argument(
        '--resume-reset-schedule', action='store_true',
        help='with --resume: start the config\'s LR/momentum schedule '
        'afresh at the resumed iteration instead of refusing a checkpoint '
        'whose schedulers differ from the config')
    parser.add_argument(
        '--resume-reset-optimizer', action='store_true',
        help='with --resume: start the optimizer state and schedule afresh '
        'instead of refusing a checkpoint of another optimizer type')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, KEY=VALUE (e.g. '
        'train_dataloader.batch_size=8 model.backbone.init_cfg=None)')
    parser.add_argument('--launcher',
                        choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (torch>=2) or --local_rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_cfg(args: argparse.Namespace) -> Config:
    """Load the config and apply the command-line settings."""
    cfg = load_tool_config(args.config, args.launcher, args.cfg_options,
                           args.work_dir)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise RuntimeError('--auto-scale-lr needs '
                               'auto_scale_lr.base_batch_size in the config')
        cfg.auto_scale_lr.enable = True
    if (args.resume_reset_schedule or args.resume_reset_optimizer) and \
            args.resume is None:
        raise ValueError('--resume-reset-schedule/--resume-reset-optimizer '
                         'need --resume')
    if args.resume_reset_schedule:
        cfg.resume_reset_schedule = True
    if args.resume_reset_optimizer:
        cfg.resume_reset_optimizer = True
    if args.compile:
        check_compile_backend(args.compile)
        cfg.compile = dict(backend=args.compile)
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if '://' not in args.resume:
            require_regular_file(args.resume, '--resume checkpoint')
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = build_cfg(args)
    # Fail before any work if a neck expects other channels than the taps.
    check_neck_channels(cfg)
    setup_cpu_distributed(cfg, args.launcher)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg \
        else RUNNERS.build(cfg)
    runner.train()


if __name__ == '__main__':
    main()
