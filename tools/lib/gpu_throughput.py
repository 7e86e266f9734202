"""GPU throughput of the ReXNet classifier against timm's peers, and CUDA
parity with timm's ``rexnet_100`` (``tools/analysis/gpu_throughput.py``).

Written for a rented GPU machine that has torch and timm but not mmcv's
compiled ops: it imports only :mod:`..models` code that needs mmcv's Python
bricks (ConvModule, norm layers) and :mod:`..checkpoint.formats` (pure
torch); the tool loads it without the package ``__init__`` files, which
register detectors and so import ``mmcv.ops``.

Training and inference images/s at batch ``batch`` and ``size x size``,
with autocast (``amp``) and channels_last, timed with CUDA synchronisation
in interleaved rounds (median and [min-max] of the round figures).
"""
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from rexnet_det.checkpoint.formats import timm_to_rexnet_det
from rexnet_det.models.classifier import ReXNetClassifier

OURS = 'ReXNet-1.0x (rexnet_det)'
#: timm models measured beside ours; the first is our reference.
TIMM_PEERS = ('rexnet_100', 'efficientnet_b0', 'mobilenetv2_100')
AMP_DTYPES = {'float16': torch.float16, 'bfloat16': torch.bfloat16,
              'none': None}


@dataclass
class ThroughputRow:
    """One model in one mode (``'infer'`` or ``'train'``)."""
    model: str
    mode: str
    params_m: float
    images_per_s: float
    low: float
    high: float
    vs_mobilenetv2: float = float('nan')
    vs_timm_rexnet: float = float('nan')


def build_model(name: str) -> nn.Module:
    """Our ReXNet-1.0x classifier (:data:`OURS`) or a timm model, random
    weights."""
    if name == OURS:
        return ReXNetClassifier(width_mult=1.0)
    import timm
    return timm.create_model(name, pretrained=False)


def _step_fn(model: nn.Module, mode: str, batch: int, size: int,
             amp: Optional[torch.dtype], device: torch.device
             ) -> Callable[[], None]:
    """One inference forward or one training step (SGD, loss scaling for
    float16) of `model` on a fixed random batch."""
    x = torch.randn(batch, 3, size, size, device=device).contiguous(
        memory_format=torch.channels_last)
    autocast = torch.autocast(device.type, dtype=amp or torch.float32,
                              enabled=amp is not None)
    # one model serves both modes: each step sets its own (BN, dropout)
    if mode == 'infer':
        def infer():
            model.eval()
            with torch.no_grad(), autocast:
                model(x)
        return infer
    y = torch.randint(0, 1000, (batch, ), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type,
                                  enabled=amp == torch.float16)

    def train():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = F.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return train


def _timed(fn: Callable[[], None], iters: int, device: torch.device
           ) -> float:
    sync = (torch.cuda.synchronize if device.type == 'cuda'
            else (lambda: None))
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return time.perf_counter() - start


def measure_throughput(names: Sequence[str] = (OURS, ) + TIMM_PEERS,
                       modes: Sequence[str] = ('infer', 'train'),
                       batch: int = 256, size: int = 224,
                       amp: str = 'float16', device: str = 'cuda',
                       rounds: int = 3, iters: int = 20, warmup: int = 5
                       ) -> List[ThroughputRow]:
    """Images/s of every model in every mode; rounds interleave the models
    so that drifts of the machine hit all of them alike.

    Raises:
        ValueError: For an unknown `amp` or mode.
    """
    if amp not in AMP_DTYPES:
        raise ValueError(f'amp must be one of {sorted(AMP_DTYPES)}, '
                         f'got {amp!r}')
    bad = [m for m in modes if m not in ('infer', 'train')]
    if bad:
        raise ValueError(f"modes must be 'infer' or 'train', got {bad}")
    dev = torch.device(device)
    torch.backends.cudnn.benchmark = True
    models = {n: build_model(n).to(dev).to(memory_format=torch.channels_last)
              for n in names}
    steps: Dict[tuple, Callable[[], None]] = {}
    for name, model in models.items():
        for mode in modes:
            steps[name, mode] = _step_fn(model, mode, batch, size,
                                         AMP_DTYPES[amp], dev)
            _timed(steps[name, mode], warmup, dev)
    rates: Dict[tuple, List[float]] = {key: [] for key in steps}
    for _ in range(rounds):
        for key, fn in steps.items():
            rates[key].append(batch * iters / _timed(fn, iters, dev))
    rows = []
    for (name, mode), values in rates.items():
        params = sum(p.numel() for p in models[name].parameters()) / 1e6
        rows.append(ThroughputRow(name, mode, params,
                                  statistics.median(values), min(values),
                                  max(values)))
    by_key = {(r.model, r.mode): r for r in rows}
    for row in rows:
        for peer, attr in (('mobilenetv2_100', 'vs_mobilenetv2'),
                           ('rexnet_100', 'vs_timm_rexnet')):
            if (peer, row.mode) in by_key:
                setattr(row, attr, row.images_per_s /
                        by_key[peer, row.mode].images_per_s)
    return rows


def _busy_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine terms, so that a parity check
    also checks how each BN is wired."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)
    return model


def timm_parity(device: str = 'cuda', batch: int = 8, size: int = 224,
                seed: int = 0) -> dict:
    """Load timm's ``rexnet_100`` weights (random, busy BN) into our
    classifier through the timm converter and compare logits on `device`:
    float32 with TF32 off, and float16 autocast (both models under it).

    Returns:
        dict: ``max_abs`` / ``max_rel`` (float32), ``amp_max_abs``,
        ``top1_agree`` (fraction of images whose float32 argmax agrees).
    """
    import timm
    torch.manual_seed(seed)
    dev = torch.device(device)
    ref = _busy_bn(timm.create_model('rexnet_100', pretrained=False)).eval()
    ours = ReXNetClassifier(width_mult=1.0).eval()
    ours.load_state_dict(timm_to_rexnet_det(ref.state_dict()), strict=True)
    ref, ours = ref.to(dev), ours.to(dev)
    x = torch.randn(batch, 3, size, size, device=dev)
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.\
        allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.no_grad():
            a, b = ref(x).float(), ours(x).float()
            with torch.autocast(dev.type, dtype=torch.float16
                                if dev.type == 'cuda' else torch.bfloat16):
                a16, b16 = ref(x).float(), ours(x).float()
    finally:
        (torch.backends.cudnn.allow_tf32,
         torch.backends.cuda.matmul.allow_tf32) = tf32
    diff = (a - b).abs().max().item()
    return dict(device=str(dev), max_abs=diff,
                max_rel=diff / a.abs().max().item(),
                amp_max_abs=(a16 - b16).abs().max().item(),
                top1_agree=(a.argmax(1) == b.argmax(1)).float().mean().item())


def format_rows(rows: Sequence[ThroughputRow]) -> str:
    """Markdown table of :func:`measure_throughput`'s rows."""
    lines = ['| model | mode | params M | images/s, median [min-max] | '
             'vs mobilenetv2_100 | vs timm rexnet_100 |',
             '|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f'| {r.model} | {r.mode} | {r.params_m:.2f} | '
                     f'{r.images_per_s:.0f} [{r.low:.0f}-{r.high:.0f}] | '
                     f'{r.vs_mobilenetv2:.2f} | {r.vs_timm_rexnet:.2f} |')
    return '\n'.join(lines)


def rows_as_dicts(rows: Sequence[ThroughputRow]) -> List[dict]:
    return [asdict(r) for r in rows]
