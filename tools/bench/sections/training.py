"""Training speed: seconds per SGD iteration (forward, loss, backward,
step) on a fixed synthetic batch, one thread.

SSDLite-ReXNet-1.0x against mmdet's SSDLite-MobileNetV2, and Mask
R-CNN-ReXNet-1.0x with and without ``with_cp`` (same weights: the losses
must agree exactly).
"""
import time
from typing import Any, Dict, Optional

import torch

from tools.bench.goals import PAPER_FLOPS
from tools.bench.sections.backbones import ratio
from tools.lib.detectors import (MBV2_SSDLITE, REXNET_MASK_RCNN,
                                 REXNET_SSDLITE, build_detector, load_config,
                                 synthetic_batch)
from tools.lib.flops import count_complexity
from tools.lib.timing import Case, measure

NAME, ORDER = 'training', 50


def mask_rcnn_config(quick: bool):
    """The repository's Mask R-CNN-ReXNet-1.0x config; with `quick` the RoI
    heads see few proposals (a smoke test, not a measurement)."""
    cfg = load_config(REXNET_MASK_RCNN)
    if quick:
        cfg.model.train_cfg.rpn_proposal.update(nms_pre=100, max_per_img=20)
        cfg.model.train_cfg.rcnn.sampler.num = 16
        cfg.model.test_cfg.rpn.update(nms_pre=100, max_per_img=20)
    return cfg


def ssdlite_pair() -> Dict[str, torch.nn.Module]:
    """SSDLite-ReXNet-1.0x and mmdet's SSDLite-MobileNetV2, seeded, in
    training mode."""
    torch.manual_seed(0)
    models = {}
    for name, path in (('SSDLite-ReXNet-1.0x', REXNET_SSDLITE),
                       ('SSDLite-MobileNetV2', MBV2_SSDLITE)):
        models[name] = build_detector(load_config(path)).train()
    return models


class TrainStep:
    """One SGD iteration of a detector on a fixed synthetic batch."""

    def __init__(self, model, inputs, samples, lr: float = 1e-4) -> None:
        self.model, self.inputs, self.samples = model, inputs, samples
        self.optimizer = torch.optim.SGD(
            [p for p in model.parameters() if p.requires_grad], lr=lr,
            momentum=0.9)
        self.phases: Dict[str, float] = {}
        self.last_losses: Dict[str, float] = {}

    def __call__(self) -> float:
        t0 = time.perf_counter()
        losses = self.model.loss(self.inputs, self.samples)
        loss, log_vars = self.model.parse_losses(losses)
        t1 = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        self.optimizer.step()
        t3 = time.perf_counter()
        self.phases = dict(forward_loss=t1 - t0, backward=t2 - t1,
                           optimizer=t3 - t2)
        self.last_losses = {k: float(v) for k, v in log_vars.items()}
        return float(loss)


def mask_rcnn_step(opts, with_cp: bool,
                   state: Optional[dict] = None) -> 'TrainStep':
    torch.manual_seed(0)
    model = build_detector(mask_rcnn_config(opts.quick), with_cp=with_cp)
    if state is not None:
        model.load_state_dict(state)
    model.train()
    inputs, samples = synthetic_batch(model, opts.mask_batch,
                                      opts.mask_size, opts.mask_size,
                                      with_mask=True)
    return TrainStep(model, inputs, samples)


def _tensor_macs(model: torch.nn.Module, inputs, samples) -> int:
    """MACs of one image through the detector's ``tensor`` forward."""
    model.eval()
    forward = model.forward
    model.forward = lambda x: forward(x, samples[:1], 'tensor')
    try:
        return count_complexity(model, (inputs[:1], ))['macs']
    finally:
        del model.forward
        model.train()


def run(opts) -> Dict[str, Any]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(opts)
    finally:
        torch.set_num_threads(previous)


def _run(opts) -> Dict[str, Any]:
    size, batch = opts.train_size, opts.train_batch
    steps, macs = {}, {}
    for name, model in ssdlite_pair().items():
        inputs, samples = synthetic_batch(model, batch, size, size)
        macs[name] = _tensor_macs(model, inputs, samples)
        steps[name] = TrainStep(model, inputs, samples)
    cases = [Case(name, step, batch, dict(model=name, gmacs=macs[name] / 1e9))
             for name, step in steps.items()]
    timings = measure(cases, opts.rounds, 1)
    rows = [dict(c.info, s_per_iter=timings[c.name].summary()['p50_ms'] /
                 1e3, cpu_s_per_iter=timings[c.name].summary()[
                     'cpu_p50_ms'] / 1e3, batch=batch, size=size)
            for c in cases]
    ours, peer = (timings[c.name] for c in cases)
    result = dict(
        ssdlite_batch=batch, ssdlite_size=size, rows=rows,
        ssdlite_ratio=ratio(ours, peer),
        mac_ratio=macs[cases[0].name] / macs[cases[1].name],
        paper_flop_ratio=PAPER_FLOPS['rexnet'] / PAPER_FLOPS['mobilenetv2'])

    # Mask R-CNN with and without activation checkpointing, same weights.
    plain = mask_rcnn_step(opts, with_cp=False)
    cp = mask_rcnn_step(opts, with_cp=True, state=plain.model.state_dict())
    losses = []
    for step in (plain, cp):
        torch.manual_seed(1)
        step()
        losses.append(dict(step.last_losses))
    cases = [Case(f'with_cp={flag}', step, opts.mask_batch)
             for flag, step in ((False, plain), (True, cp))]
    timings = measure(cases, min(opts.rounds, 3), 1, warmup=0)
    result['mask_rcnn'] = dict(
        batch=opts.mask_batch, size=opts.mask_size,
        s_per_iter={c.name: timings[c.name].summary()['p50_ms'] / 1e3
                    for c in cases},
        cp_time_ratio=ratio(timings['with_cp=True'],
                            timings['with_cp=False']),
        losses_max_abs_diff=max(abs(losses[0][k] - losses[1][k])
                                for k in losses[0]))
    return result


def tables(result: Dict[str, Any]) -> Dict[str, str]:
    r = result['ssdlite_ratio']['cpu']
    lines = ['| case | s/iter | CPU s/iter |', '|---|---|---|']
    lines += [f'| {row["model"]}, batch {row["batch"]}, {row["size"]} px | '
              f'{row["s_per_iter"]:.3f} | {row["cpu_s_per_iter"]:.3f} |'
              for row in result['rows']]
    m = result['mask_rcnn']
    lines += [f'| Mask R-CNN-ReXNet-1.0x, batch {m["batch"]}, {m["size"]} '
              f'px, {name} | {s:.2f} | - |'
              for name, s in m['s_per_iter'].items()]
    lines.append('')
    cp = m['cp_time_ratio']['cpu']
    lines.append(f'SSDLite time ratio (CPU clock) **{r["median"]:.3f}** '
                 f'[{r["min"]:.3f}-{r["max"]:.3f}] against a MAC ratio of '
                 f'{result["mac_ratio"]:.3f} (paper FLOP ratio '
                 f'{result["paper_flop_ratio"]:.3f}); with_cp costs '
                 f'{cp["median"] - 1:+.1%} time per Mask R-CNN iteration, '
                 f'losses max abs diff {m["losses_max_abs_diff"]:.3g}.')
    return dict(training='\n'.join(lines))
