# Faster R-CNN + FPN with an ImageNet-initialised ReXNet-1.0x (the paper's
# COCO detection setting: 38.5 box AP reported by the paper).
# Weights, frozen layers, norm_eval and SyncBN: see
# ../mask_rcnn/mask-rcnn_rexnet-1.0x_fpn_1x_coco.py.
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    '../_base_/datasets/coco_detection.py',
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
    neck=dict(in_channels=[38, 61, 128, 185]))

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=5e-5),
    paramwise_cfg=dict(norm_decay_mult=0.))
