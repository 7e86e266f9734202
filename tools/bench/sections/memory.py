"""Peak training memory of Mask R-CNN-ReXNet with and without ``with_cp``.

Each measurement runs in a fresh process (``python -m
tools.bench.sections.memory WITH_CP``), so what one run allocated never
inflates the next.
"""
import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional

import torch

from tools.bench.options import BenchmarkOptions
from tools.bench.sections.training import mask_rcnn_step

NAME, ORDER = 'memory', 60
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def _rss_bytes() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


class _RssSampler(threading.Thread):
    """Reads the resident set size every millisecond; keeps the maximum."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = _rss_bytes()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.001)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


def memory_worker(opts: BenchmarkOptions, with_cp: bool) -> None:
    """Measure training memory in this fresh process; print one JSON line.

    ``libs``: resident size once torch/mmdet are imported, before the model
    exists. One warm-up iteration allocates gradients, SGD momentum and
    one-time caches; the second iteration is measured. ``peak_mb`` = its
    peak resident size minus ``libs`` (parameters, gradients, optimizer
    state, activations and temporaries: what ``max_memory_allocated``
    counts on a GPU). ``activation_peak_mb`` = its peak minus the resident
    size just before it.
    """
    import mmdet.models  # noqa: F401  load every library before `libs`
    gc.collect()
    libs = _rss_bytes()
    step = mask_rcnn_step(opts, with_cp=with_cp)
    torch.manual_seed(1)
    step()  # warm-up
    params = {p.data_ptr() for p in step.model.parameters()}
    saved: Dict[int, int] = {}

    def pack(t):
        if t.data_ptr() not in params:
            saved[t.untyped_storage().data_ptr()] = \
                t.untyped_storage().nbytes()
        return t

    gc.collect()
    before = _rss_bytes()
    sampler = _RssSampler()
    sampler.start()
    torch.manual_seed(1)
    t0 = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    seconds = time.perf_counter() - t0
    peak = sampler.stop()
    print(json.dumps(dict(
        with_cp=with_cp, libs_rss_mb=libs / 2**20,
        before_step_rss_mb=before / 2**20, peak_rss_mb=peak / 2**20,
        peak_mb=(peak - libs) / 2**20,
        activation_peak_mb=(peak - before) / 2**20,
        saved_for_backward_mb=sum(saved.values()) / 2**20,
        step_s=seconds, losses=step.last_losses)))


def run(opts: BenchmarkOptions) -> dict:
    runs = []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    # A fixed mmap threshold makes glibc return every large block to the
    # OS when freed, so the resident size follows the live tensors.
    env.update(MALLOC_MMAP_THRESHOLD_='65536', MALLOC_TRIM_THRESHOLD_='0')
    order = [0, 1] * (1 if opts.quick else 2)
    for flag in order:
        cmd = [sys.executable, '-m', __name__, str(flag),
               '--mask-batch', str(opts.mask_batch),
               '--mask-size', str(opts.mask_size)] + \
            (['--quick'] if opts.quick else [])
        out = subprocess.run(cmd, capture_output=True, text=True, env=env,
                             cwd=ROOT)
        if out.returncode != 0:
            raise RuntimeError(f'memory worker failed:\n{out.stderr[-3000:]}')
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    summary = {}
    for flag in (False, True):
        mine = [r for r in runs if r['with_cp'] == flag]
        summary[f'with_cp={flag}'] = {
            k: statistics.median(r[k] for r in mine)
            for k in ('peak_mb', 'activation_peak_mb',
                      'saved_for_backward_mb', 'libs_rss_mb', 'step_s')}
    off, on = summary['with_cp=False'], summary['with_cp=True']
    losses = [r['losses'] for r in runs]
    return dict(
        batch=opts.mask_batch, size=opts.mask_size, runs=runs,
        summary=summary,
        peak_saving=1 - on['peak_mb'] / off['peak_mb'],
        activation_peak_saving=1 - on['activation_peak_mb'] /
        off['activation_peak_mb'],
        saved_tensor_saving=1 - on['saved_for_backward_mb'] /
        off['saved_for_backward_mb'],
        losses_max_abs_diff=max(abs(a[k] - b[k]) for a in losses
                                for b in losses for k in a),
        method='one fresh process per run; resident set size sampled every '
        '1 ms (/proc/self/statm) during the second training iteration; '
        'peak = its maximum minus the resident size after importing the '
        'libraries (params + grads + SGD state + activations); glibc mmap '
        'threshold fixed at 64 KiB so freed tensors leave the resident set; '
        'saved_for_backward = bytes of non-parameter tensors autograd saves '
        '(saved_tensors_hooks)')



def main(argv: Optional[List[str]] = None) -> None:
    """Entry point of one measurement process (prints one JSON line)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('with_cp', type=int, choices=[0, 1])
    parser.add_argument('--mask-batch', type=int, default=2)
    parser.add_argument('--mask-size', type=int, default=512)
    parser.add_argument('--quick', action='store_true')
    args = parser.parse_args(argv)
    opts = BenchmarkOptions(quick=args.quick)
    if not args.quick:
        opts.mask_batch, opts.mask_size = args.mask_batch, args.mask_size
    torch.set_num_threads(1)
    memory_worker(opts, bool(args.with_cp))



def tables(result: dict) -> Dict[str, str]:
    lines = ['| | peak | activation peak | saved for backward | s/iter |',
             '|---|---|---|---|---|']
    for name, v in result['summary'].items():
        lines.append(f'| {name} | {v["peak_mb"]:.1f} MB | '
                     f'{v["activation_peak_mb"]:.1f} MB | '
                     f'{v["saved_for_backward_mb"]:.1f} MB | '
                     f'{v["step_s"]:.2f} |')
    lines.append(f'| saving | **{result["peak_saving"]:.1%}** | '
                 f'{result["activation_peak_saving"]:.1%} | '
                 f'{result["saved_tensor_saving"]:.1%} | |')
    lines += ['', f'Mask R-CNN-ReXNet-1.0x, batch {result["batch"]}, '
              f'{result["size"]} px, medians of {len(result["runs"]) // 2} '
              'processes each; losses max abs diff '
              f'{result["losses_max_abs_diff"]:.3g}.']
    return dict(memory='\n'.join(lines))


if __name__ == '__main__':
    main()
