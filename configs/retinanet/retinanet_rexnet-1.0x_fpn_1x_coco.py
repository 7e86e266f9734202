# RetinaNet + FPN with an ImageNet-initialised ReXNet-1.0x. As mmdet's
# RetinaNet, the pyramid uses strides 8-32 (taps 2-4) plus two extra convs
# on the last input (P6, P7). Weights, frozen layers, norm_eval and SyncBN:
# see ../mask_rcnn/mask-rcnn_rexnet-1.0x_fpn_1x_coco.py.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
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
        out_indices=(2, 3, 4),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # ReXNet(width_mult=1.0, out_indices=(2, 3, 4)).out_channels
    neck=dict(in_channels=[61, 128, 185], start_level=0))

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-5),
    paramwise_cfg=dict(norm_decay_mult=0.))
