"""Backbone inference: ReXNet-1.0x vs mmdet's MobileNetV2.

Each backbone (ReXNet from the stem to its 1280-channel conv, MobileNetV2
to its 1280-channel conv) is timed as eval model, fused (BatchNorm folded,
channels_last) and in onnxruntime, at every size and batch of the options.
Per-FLOP cost: ReXNet's time over MobileNetV2's, divided by their MAC
ratio.
"""
import copy
import os.path as osp
import tempfile
from typing import Any, Dict

import torch

from ..goals import PAPER_FLOPS
from .options import (BenchmarkOptions, calls_for, devices, estimate,
                      inference)


def build_backbones() -> Dict[str, torch.nn.Module]:
    """Eval-mode ReXNet-1.0x (taps to the 1280-ch conv) and MobileNetV2."""
    from mmdet.models.backbones import MobileNetV2

    from ...models import ReXNet
    from ...checkpoint import quiet_init_weights
    torch.manual_seed(0)
    rexnet = ReXNet(width_mult=1.0, out_indices=(5, ))
    mbv2 = MobileNetV2(widen_factor=1.0, out_indices=(7, ))
    for m in (rexnet, mbv2):
        quiet_init_weights(m)
        m.eval()  # mmdet's MobileNetV2.train() returns None: no chaining
    return dict(rexnet=rexnet, mobilenetv2=mbv2)


def fuse_mmdet(model: torch.nn.Module) -> torch.nn.Module:
    """The same inference treatment for an mmdet module: BN folded (mmcv's
    fuse_conv_bn) and channels_last weights (inputs converted by caller)."""
    from mmcv.cnn import fuse_conv_bn
    model = fuse_conv_bn(copy.deepcopy(model))
    return model.to(memory_format=torch.channels_last)


def onnx_runners(models: Dict[str, torch.nn.Module],
                 opts: BenchmarkOptions) -> Dict[str, Any]:
    """An onnxruntime runner per model, exported at 224 (the file is read
    into the session, so the temporary folder can go)."""
    from ...deploy.onnx import OrtRunner, export_onnx
    runners = {}
    with tempfile.TemporaryDirectory(prefix='rexnet_bench_') as workdir:
        for name, model in models.items():
            path = osp.join(workdir, f'{name}.onnx')
            export_onnx(model, path, input_shape=(1, 3, 224, 224),
                        names=['out'])
            runners[name] = OrtRunner(path, threads=opts.threads)
    return runners


def run_backbones(opts: BenchmarkOptions, report: dict) -> None:
    from ..flops import image_complexity
    from ..timing import Case, measure, paired_ratio
    eval_models = build_backbones()
    rows, ratios = [], []
    ort = onnx_runners(eval_models, opts) if opts.onnx else {}
    for device in devices(opts):
        models = {k: copy.deepcopy(v).to(device)
                  for k, v in eval_models.items()}
        fused = {
            'rexnet': copy.deepcopy(models['rexnet']).fuse(),
            'rexnet_nchw': copy.deepcopy(models['rexnet']).fuse(
                channels_last=False),
            'mobilenetv2': fuse_mmdet(models['mobilenetv2']),
        }
        for size in opts.sizes:
            macs = {k: image_complexity(eval_models[k], size, size)['macs']
                    for k in eval_models}
            for batch in opts.batches:
                x = torch.randn(batch, 3, size, size, device=device)
                x_cl = x.contiguous(memory_format=torch.channels_last)
                info = dict(device=device, size=size)
                specs = [
                    ('rexnet-1.0x eval', 'rexnet', 'eval',
                     inference(models['rexnet'], x, device)),
                    ('rexnet-1.0x fused', 'rexnet', 'fused',
                     inference(fused['rexnet'], x, device)),
                    ('rexnet-1.0x fused-nchw', 'rexnet', 'fused-nchw',
                     inference(fused['rexnet_nchw'], x, device)),
                    ('mobilenetv2 eval', 'mobilenetv2', 'eval',
                     inference(models['mobilenetv2'], x, device)),
                    ('mobilenetv2 fused', 'mobilenetv2', 'fused',
                     inference(fused['mobilenetv2'], x_cl, device)),
                ]
                if device == 'cpu':
                    x_np = x.numpy()
                    for key, runner in ort.items():
                        name = 'rexnet-1.0x' if key == 'rexnet' else key
                        specs.append((f'{name} onnxruntime', key,
                                      'onnxruntime',
                                      lambda r=runner: r.run_numpy(x_np)))
                cases = [Case(name, fn, batch, dict(
                    info, model=model, variant=variant,
                    gmacs_per_image=macs[model] / 1e9))
                    for name, model, variant, fn in specs]
                calls = calls_for(opts, estimate(cases[0].fn))
                print(f'[backbone] {device} {size}x{size} batch {batch}: '
                      f'{len(cases)} cases x {opts.repeats} rounds x '
                      f'{calls} calls', flush=True)
                timings = measure(cases, opts.repeats, calls)
                rows += [t.summary() for t in timings.values()]
                mac_ratio = macs['rexnet'] / macs['mobilenetv2']
                group = dict(device=device, size=size, batch=batch)
                ratios.append(dict(
                    group, name='fused_speedup',
                    description='images/s of fused over eval ReXNet-1.0x',
                    wall=invert(paired_ratio(
                        timings['rexnet-1.0x fused'],
                        timings['rexnet-1.0x eval'])),
                    cpu=invert(paired_ratio(
                        timings['rexnet-1.0x fused'],
                        timings['rexnet-1.0x eval'], 'cpu'))))
                for variant in ('eval', 'fused', 'onnxruntime'):
                    a = timings.get(f'rexnet-1.0x {variant}')
                    b = timings.get(f'mobilenetv2 {variant}')
                    if a is None or b is None:
                        continue
                    wall, cpu = paired_ratio(a, b), paired_ratio(a, b, 'cpu')
                    ratios.append(dict(
                        group, name=f'per_flop_{variant}',
                        description='(ReXNet time / MobileNetV2 time) / '
                        f'MAC ratio, {variant}', mac_ratio=mac_ratio,
                        paper_flop_ratio=PAPER_FLOPS['rexnet'] /
                        PAPER_FLOPS['mobilenetv2'],
                        time_ratio=dict(wall=wall, cpu=cpu),
                        wall=scale(wall, 1 / mac_ratio),
                        cpu=scale(cpu, 1 / mac_ratio)))
    report['backbone'] = dict(rows=rows, ratios=ratios)


def invert(r: dict) -> dict:
    """A ratio summary of the reciprocal."""
    return dict(median=1 / r['median'], min=1 / r['max'], max=1 / r['min'],
                rounds=r['rounds'])


def scale(r: dict, k: float) -> dict:
    """A ratio summary times `k`."""
    return dict(median=r['median'] * k, min=r['min'] * k, max=r['max'] * k,
                rounds=r['rounds'])

