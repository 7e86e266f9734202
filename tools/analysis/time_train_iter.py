"""Seconds per training iteration of a detector config on this machine.

    python tools/analysis/time_train_iter.py CONFIG [--batch 8] [--size 320]
        [--iters 5] [--warmup 2] [--threads N]

Builds the model from the config (backbone init_cfg=None), feeds random
images with random boxes (and masks for Mask R-CNN) of the given size
(mmdet.testing.demo_mm_inputs) and times full steps: data preprocessing,
forward with losses, backward and the optimizer step of the config's
optim_wrapper. Prints the mean and each iteration's time. No dataset needed.
"""
import argparse
import os.path as osp
import statistics
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--size', type=int, default=320)
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--objects', type=int, default=4,
                        help='boxes per image')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch threads (default: torch\'s choice)')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    import warnings
    warnings.filterwarnings('ignore')
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    import rexnet_det  # noqa: F401
    from mmdet.testing import demo_mm_inputs
    from mmengine.optim import build_optim_wrapper

    from rexnet_det.utils.configs import build_model, load_config
    cfg = load_config(args.config)
    cfg.model.backbone.init_cfg = None
    model = build_model(cfg)
    model.init_weights()
    model.train()
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    head = cfg.model.get('roi_head', {}).get('bbox_head') or \
        cfg.model.bbox_head
    with_mask = 'roi_head' in cfg.model and 'mask_head' in cfg.model.roi_head
    times = []
    for i in range(args.warmup + args.iters):
        packed = demo_mm_inputs(args.batch, (3, args.size, args.size),
                                num_items=[args.objects] * args.batch,
                                num_classes=head.num_classes,
                                with_mask=with_mask)
        t0 = time.perf_counter()
        data = model.data_preprocessor(packed, True)
        losses = model(**data, mode='loss')
        loss, _ = model.parse_losses(losses)
        optim.update_params(loss)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    name = osp.splitext(osp.basename(args.config))[0]
    print(f'{name}: batch {args.batch}, {args.size}x{args.size}, '
          f'{torch.get_num_threads()} thread(s): '
          f'{statistics.mean(times):.2f} s/iter (mean of {len(times)} after '
          f'{args.warmup} warm-up; each: '
          f'{", ".join(f"{t:.2f}" for t in times)})')


if __name__ == '__main__':
    main()
