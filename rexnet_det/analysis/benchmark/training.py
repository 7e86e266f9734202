"""Training speed: seconds per SGD iteration.

SSDLite-ReXNet vs SSDLite-MobileNetV2, and Mask R-CNN-ReXNet with and
without ``with_cp`` (same weights, same losses), optionally with a profile
of where one iteration's time goes.
"""
import time
from typing import Dict, Optional

import torch

from ..goals import PAPER_FLOPS
from .detectors import mask_rcnn_config, ssdlite_pair
from .options import BenchmarkOptions
from .report import format_profile


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


def mask_rcnn_step(opts: BenchmarkOptions, with_cp: bool,
                   state: Optional[dict] = None) -> 'TrainStep':
    from ..detectors import build_detector, synthetic_batch
    torch.manual_seed(0)
    model = build_detector(mask_rcnn_config(opts), with_cp=with_cp)
    if state is not None:
        model.load_state_dict(state)
    model.train()
    inputs, samples = synthetic_batch(model, opts.mask_batch,
                                      opts.mask_size, opts.mask_size,
                                      with_mask=True)
    return TrainStep(model, inputs, samples)


def profile_step(step: TrainStep, top: int = 15) -> dict:
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    ops = sorted(events, key=lambda e: e.self_cpu_time_total,
                 reverse=True)[:top]
    return dict(
        phases_s=dict(step.phases),
        total_self_cpu_ms=total / 1e3,
        top_ops=[dict(op=e.key, self_cpu_ms=e.self_cpu_time_total / 1e3,
                      percent=100 * e.self_cpu_time_total / total,
                      calls=e.count) for e in ops])


def run_train(opts: BenchmarkOptions, report: dict) -> None:
    from ..detectors import synthetic_batch
    from ..flops import count_complexity
    from ..timing import Case, measure, paired_ratio
    rows, ratios, profiles = [], [], {}
    size, batch = opts.train_size, opts.train_batch
    models = ssdlite_pair(True)
    steps, macs = {}, {}
    for name, model in models.items():
        inputs, samples = synthetic_batch(model, batch, size, size)
        steps[name] = TrainStep(model, inputs, samples)
        model.eval()
        fwd = model.forward
        model.forward = lambda x, f=fwd, s=samples: f(x, s, 'tensor')
        macs[name] = count_complexity(model, (inputs[:1], ))['macs']
        del model.forward
        model.train()
    cases = [Case(name, step, batch, dict(
        device='cpu', size=size, model=name, variant='train',
        gmacs_per_image=macs[name] / 1e9)) for name, step in steps.items()]
    print(f'[train] SSDLite batch {batch} {size}px: 2 cases x '
          f'{opts.repeats} rounds x 1 call', flush=True)
    timings = measure(cases, opts.repeats, 1)
    rows += [dict(t.summary(), s_per_iter=t.summary()['p50_ms'] / 1e3)
             for t in timings.values()]
    a, b = timings['ssdlite-rexnet-1.0x'], timings['ssdlite-mobilenetv2']
    ratios.append(dict(
        name='ssdlite_train_ratio', size=size, batch=batch,
        description='SSDLite-ReXNet s/iter / SSDLite-MobileNetV2 s/iter',
        mac_ratio=macs['ssdlite-rexnet-1.0x'] / macs['ssdlite-mobilenetv2'],
        paper_flop_ratio=PAPER_FLOPS['rexnet'] / PAPER_FLOPS['mobilenetv2'],
        wall=paired_ratio(a, b), cpu=paired_ratio(a, b, 'cpu')))
    if opts.profile:
        for name, step in steps.items():
            profiles[name] = profile_step(step)
            print(format_profile(name, profiles[name]))

    # Mask R-CNN with and without activation checkpointing, same weights.
    plain = mask_rcnn_step(opts, with_cp=False)
    cp = mask_rcnn_step(opts, with_cp=True,
                         state=plain.model.state_dict())
    torch.manual_seed(1)
    loss_plain = (plain(), dict(plain.last_losses))
    torch.manual_seed(1)
    loss_cp = (cp(), dict(cp.last_losses))
    diff = max(abs(loss_plain[1][k] - loss_cp[1][k]) for k in loss_plain[1])
    cases = [Case(f'mask-rcnn-rexnet-1.0x with_cp={flag}', step,
                  opts.mask_batch, dict(device='cpu', size=opts.mask_size,
                                        model='mask-rcnn-rexnet-1.0x',
                                        variant=f'train with_cp={flag}'))
             for flag, step in ((False, plain), (True, cp))]
    rounds = min(opts.repeats, 3)  # ~20 s per iteration on 1 CPU thread
    print(f'[train] Mask R-CNN batch {opts.mask_batch} {opts.mask_size}px: '
          f'2 cases x {rounds} rounds x 1 call', flush=True)
    timings = measure(cases, rounds, 1, warmup=0)
    rows += [dict(t.summary(), s_per_iter=t.summary()['p50_ms'] / 1e3)
             for t in timings.values()]
    ratios.append(dict(
        name='mask_rcnn_cp_time_ratio', size=opts.mask_size,
        batch=opts.mask_batch,
        description='Mask R-CNN-ReXNet s/iter with_cp=True / with_cp=False',
        wall=paired_ratio(timings[cases[1].name], timings[cases[0].name]),
        cpu=paired_ratio(timings[cases[1].name], timings[cases[0].name],
                         'cpu')))
    report['train'] = dict(
        rows=rows, ratios=ratios, profile=profiles,
        mask_rcnn_losses=dict(with_cp_false=loss_plain[1],
                              with_cp_true=loss_cp[1], max_abs_diff=diff))
