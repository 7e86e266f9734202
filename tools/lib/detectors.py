"""Detectors with random weights and synthetic batches for the analysis
tools and benchmarks (no dataset, no checkpoint download needed); configs
are read and built by the package's one route
(:mod:`rexnet_det.utils.configs`)."""
import copy
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config

from rexnet_det.checkpoint import quiet_init_weights
from rexnet_det.utils.configs import build_model, load_config

# mmdet's own baselines the benchmark measures against.
MBV2_SSDLITE = 'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'
REXNET_SSDLITE = 'rexnet_det::ssdlite/ssdlite_rexnet-1.0x_8xb24-600e_coco.py'
REXNET_MASK_RCNN = 'rexnet_det::mask_rcnn/mask-rcnn_rexnet-1.0x_fpn_1x_coco.py'

__all__ = ['build_detector', 'config_input_size', 'load_config',
           'synthetic_batch']


def _drop_pretrained(cfg: dict) -> None:
    """Remove ``Pretrained`` init_cfgs: the tools run offline on random
    weights (FLOPs and speed do not depend on the values)."""
    if isinstance(cfg, dict):
        init = cfg.get('init_cfg')
        if isinstance(init, dict) and init.get('type') == 'Pretrained':
            cfg['init_cfg'] = None
        for value in cfg.values():
            _drop_pretrained(value)


def build_detector(cfg: Config, init: bool = True,
                   **backbone_overrides) -> nn.Module:
    """Build ``cfg.model`` with random weights.

    Args:
        cfg (Config): A detector config.
        init (bool): Run ``init_weights`` (quietly). Default: True.
        **backbone_overrides: Set on ``cfg.model.backbone`` (e.g.
            ``with_cp=True``).
    """
    model_cfg = copy.deepcopy(cfg.model)
    _drop_pretrained(model_cfg)
    model_cfg.backbone.update(backbone_overrides)
    model = build_model(cfg, model_cfg)
    if init:
        quiet_init_weights(model)
    return model


def synthetic_batch(model: nn.Module, batch: int, height: int, width: int,
                    with_mask: bool = False, num_boxes: int = 5,
                    training: bool = True) -> Tuple[torch.Tensor, List]:
    """A preprocessed batch of random images with random boxes (and masks),
    as the detector's data preprocessor returns it.

    Returns:
        tuple: ``(inputs, data_samples)``.
    """
    from mmdet.testing import demo_mm_inputs
    packed = demo_mm_inputs(batch_size=batch, image_shapes=(3, height, width),
                            num_items=[num_boxes] * batch, num_classes=80,
                            with_mask=with_mask)
    data = model.data_preprocessor(packed, training=training)
    return data['inputs'], data['data_samples']


def config_input_size(cfg: Config) -> Optional[Tuple[int, int]]:
    """(H, W) of the test pipeline's ``Resize``, if it has one."""
    for step in cfg.get('test_pipeline', []) or []:
        if step.get('type') == 'Resize' and 'scale' in step:
            w, h = step['scale']
            if step.get('keep_ratio'):  # (1333, 800): long, short side
                return min(w, h), max(w, h)
            return h, w
    return None
