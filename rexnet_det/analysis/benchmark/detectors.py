"""Detector inference: SSDLite-ReXNet-1.0x vs SSDLite-MobileNetV2.

``predict`` (network, box decoding and NMS) of both, as eval model and
fused (BatchNorm folded, channels_last), plus Mask R-CNN-ReXNet-1.0x (mmdet
has no MobileNetV2 Mask R-CNN to pair it with).
"""
import copy
from typing import Any, Callable, Dict

import torch

from .options import BenchmarkOptions, calls_for, devices, estimate, sync


def mask_rcnn_config(opts: BenchmarkOptions):
    """The repository's Mask R-CNN-ReXNet-1.0x config; with ``--quick``
    the RoI heads see few proposals (a smoke test, not a measurement)."""
    from ..detectors import REXNET_MASK_RCNN, load_config
    cfg = load_config(REXNET_MASK_RCNN)
    if opts.quick:
        for key in ('rpn_proposal', ):
            cfg.model.train_cfg[key].update(nms_pre=100, max_per_img=20)
        cfg.model.train_cfg.rcnn.sampler.num = 16
        cfg.model.test_cfg.rpn.update(nms_pre=100, max_per_img=20)
    return cfg



def ssdlite_pair(train: bool) -> Dict[str, torch.nn.Module]:
    """SSDLite-ReXNet-1.0x and mmdet's SSDLite-MobileNetV2, seeded."""
    from ..detectors import (MBV2_SSDLITE, REXNET_SSDLITE,
                                               build_detector, load_config)
    torch.manual_seed(0)
    models = {}
    for name, path in (('ssdlite-rexnet-1.0x', REXNET_SSDLITE),
                       ('ssdlite-mobilenetv2', MBV2_SSDLITE)):
        cfg = load_config(path)
        # mmdet 3.3.0's SSDHead cannot predict (no loss_cls); SSDLiteHead is
        # the same head with that fixed (rexnet_det/models/ssd_head.py).
        cfg.model.bbox_head.type = 'SSDLiteHead'
        model = build_detector(cfg)
        model.train(train)
        models[name] = model
    return models


def fuse_detector(model: torch.nn.Module) -> torch.nn.Module:
    """BN folded everywhere and channels_last; ReXNet via its own fuse()."""
    from mmcv.cnn import fuse_conv_bn

    from ...models import ReXNet
    model = copy.deepcopy(model)
    if isinstance(model.backbone, ReXNet):
        model.backbone.fuse()
    return fuse_conv_bn(model).to(memory_format=torch.channels_last)


def predict_call(model, inputs, samples, device: str
                 ) -> Callable[[], Any]:
    """A call that runs ``model.predict`` in inference mode."""
    def run():
        with torch.inference_mode():
            out = model.predict(inputs, samples)
        sync(device)
        return out
    return run


def run_detectors(opts: BenchmarkOptions, report: dict) -> None:
    from ..detectors import build_detector, synthetic_batch
    from ..flops import count_complexity
    from ..timing import Case, measure, paired_ratio
    rows, ratios = [], []
    size = opts.train_size
    for device in devices(opts):
        models = {k: m.to(device) for k, m in ssdlite_pair(False).items()}
        macs = {}
        for name, model in models.items():
            inputs, samples = synthetic_batch(model, 1, size, size,
                                              training=False)
            fwd = model.forward
            model.forward = lambda x, f=fwd, s=samples: f(x, s, 'tensor')
            macs[name] = count_complexity(model, (inputs.to(device), ))[
                'macs']
            del model.forward
        fused = {k: fuse_detector(m) for k, m in models.items()}
        for batch in opts.batches:
            cases = []
            for name, model in models.items():
                inputs, samples = synthetic_batch(model, batch, size, size,
                                                  training=False)
                inputs = inputs.to(device)
                info = dict(device=device, size=size, model=name,
                            gmacs_per_image=macs[name] / 1e9)
                cases.append(Case(f'{name} eval', predict_call(
                    model, inputs, samples, device), batch,
                    dict(info, variant='eval')))
                cases.append(Case(f'{name} fused', predict_call(
                    fused[name],
                    inputs.contiguous(memory_format=torch.channels_last),
                    samples, device), batch, dict(info, variant='fused')))
            calls = calls_for(opts, estimate(cases[0].fn))
            print(f'[detector] {device} SSDLite {size}x{size} batch {batch}: '
                  f'{len(cases)} cases x {opts.repeats} rounds x {calls} '
                  'calls', flush=True)
            timings = measure(cases, opts.repeats, calls)
            rows += [t.summary() for t in timings.values()]
            mac_ratio = macs['ssdlite-rexnet-1.0x'] / \
                macs['ssdlite-mobilenetv2']
            for variant in ('eval', 'fused'):
                a = timings[f'ssdlite-rexnet-1.0x {variant}']
                b = timings[f'ssdlite-mobilenetv2 {variant}']
                ratios.append(dict(
                    device=device, size=size, batch=batch,
                    name=f'ssdlite_time_ratio_{variant}',
                    description='SSDLite-ReXNet time / SSDLite-MobileNetV2 '
                    f'time, {variant}', mac_ratio=mac_ratio,
                    wall=paired_ratio(a, b), cpu=paired_ratio(a, b, 'cpu')))
        # Mask R-CNN-ReXNet (no MobileNetV2 Mask R-CNN in mmdet to pair with)
        if device == 'cpu':
            model = build_detector(mask_rcnn_config(opts)).eval()
            inputs, samples = synthetic_batch(
                model, 1, opts.mask_size, opts.mask_size, training=False)
            info = dict(device=device, size=opts.mask_size,
                        model='mask-rcnn-rexnet-1.0x')
            fused_model = fuse_detector(model)
            cases = [
                Case('mask-rcnn-rexnet-1.0x eval',
                     predict_call(model, inputs, samples, device), 1,
                     dict(info, variant='eval')),
                Case('mask-rcnn-rexnet-1.0x fused',
                     predict_call(fused_model, inputs.contiguous(
                         memory_format=torch.channels_last), samples,
                         device), 1, dict(info, variant='fused'))]
            calls = calls_for(opts, estimate(cases[0].fn))
            print(f'[detector] cpu Mask R-CNN {opts.mask_size}px batch 1: '
                  f'2 cases x {opts.repeats} rounds x {calls} calls',
                  flush=True)
            timings = measure(cases, opts.repeats, calls)
            rows += [t.summary() for t in timings.values()]
    report['detector'] = dict(rows=rows, ratios=ratios)


