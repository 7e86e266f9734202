"""Speed and memory of ReXNet-1.0x against mmdet's MobileNetV2, same run.

One module per section (``tools/analysis/benchmark.py --only ...``):

* :mod:`.backbones` - inference of the backbones, eval / fused /
  onnxruntime, and ReXNet's per-FLOP cost relative to MobileNetV2;
* :mod:`.detectors` - SSDLite-ReXNet vs SSDLite-MobileNetV2 ``predict``,
  and Mask R-CNN-ReXNet;
* :mod:`.training` - seconds per training iteration;
* :mod:`.memory` - peak training memory with and without ``with_cp``;
* :mod:`.report` - the printed table; goals are judged by
  :func:`rexnet_det.analysis.goals.evaluate_goals`.

All cases of a group are timed round by round in rotating order; ratios
are medians of per-round ratios with their min-max over the rounds as the
noise (:mod:`rexnet_det.analysis.timing`). Models have random weights:
speed does not depend on them.
"""
import datetime
import os
import platform
import warnings
from typing import Any, Dict

import torch

from ..goals import evaluate_goals
from .options import SECTIONS, BenchmarkOptions
from .report import format_report

__all__ = ['SECTIONS', 'BenchmarkOptions', 'format_report', 'run_benchmark']


def run_benchmark(opts: BenchmarkOptions) -> Dict[str, Any]:
    """Run the sections of `opts` and judge the goals.

    Returns:
        dict: ``meta`` (command, date, versions, threads, load), one entry
        per section run (``rows`` and ``ratios``) and ``goals``.

    Example:
        >>> report = run_benchmark(BenchmarkOptions(only=['backbone'],
        ...                                         quick=True))
        >>> sorted(report)
        ['backbone', 'goals', 'meta']
    """
    import onnxruntime  # noqa: F401  fail early, before minutes of work

    from ...version import __version__
    from .backbones import run_backbones
    from .detectors import run_detectors
    from .memory import run_memory
    from .training import run_train
    if opts.threads:
        torch.set_num_threads(opts.threads)
    report: Dict[str, Any] = dict(meta=dict(
        command=opts.command,
        date=datetime.datetime.now().isoformat(timespec='seconds'),
        torch=torch.__version__, rexnet_det=__version__,
        threads=torch.get_num_threads(), cpu=platform.processor() or
        platform.machine(), cpu_count=os.cpu_count(),
        load_average=os.getloadavg(), quick=opts.quick,
        repeats=opts.repeats))
    runners = dict(backbone=run_backbones, detector=run_detectors,
                   train=run_train, memory=run_memory)
    with warnings.catch_warnings():
        # mmdet/mmengine warn about deprecated defaults on every build
        warnings.simplefilter('ignore')
        for section in SECTIONS:
            if section in opts.only:
                runners[section](opts, report)
    report['meta']['load_average_end'] = os.getloadavg()
    report['goals'] = evaluate_goals(report)
    return report
