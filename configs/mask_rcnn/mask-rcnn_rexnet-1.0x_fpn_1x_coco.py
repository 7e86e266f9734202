# Mask R-CNN + FPN with an ImageNet-initialised ReXNet-1.0x (the paper's
# COCO instance segmentation setting: 38.9 box AP / 35.4 mask AP reported by
# the paper). FPN over taps 1-4 (strides 4, 8, 16, 32).
#
# Pretrained weights: download rexnetv1_1.0.pth (clovaai/rexnet README) to
# checkpoints/ or override the path:
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/rexnetv1_1.0.pth
# Train from scratch with --cfg-options model.backbone.init_cfg=None.
#
# Lightweight-backbone settings: the stem and stride-4 blocks are frozen,
# BN statistics stay frozen (2 images per GPU are too few for BN), weight
# decay is 5e-5 as for RegNet/MobileNet detectors and norm layers get none.
# Multi-GPU with trainable BN: add --cfg-options sync_bn=torch
# model.backbone.norm_eval=False (mmengine converts BN to SyncBN under DDP).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    '../_base_/default_runtime.py'
]

custom_imports = dict(imports=['rexnet_det'], allow_failed_imports=False)

pretrained = 'checkpoints/rexnetv1_1.0.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ReXNet',
        width_mult=1.0,
        out_indices=(1, 2, 3, 4),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # ReXNet(width_mult=1.0, out_indices=(1, 2, 3, 4)).out_channels
    neck=dict(in_channels=[38, 61, 128, 185]))

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=5e-5),
    paramwise_cfg=dict(norm_decay_mult=0.))
