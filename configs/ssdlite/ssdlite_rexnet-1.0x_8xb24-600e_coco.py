# SSDLite with a ReXNet-1.0x backbone trained from scratch: mmdet's
# SSDLite-MobileNetV2 recipe (320x320, SGD 0.015, 120 epochs x RepeatDataset 5
# = 600e, cosine, 8 GPUs x 24 images) with the backbone swapped.
# The feature pyramid starts from ReXNet tap 3 (stride 16) and tap 5 (the
# 1280*w penultimate conv, stride 32); SSDNeck adds four stride-2 depthwise
# extra layers; the head uses depthwise convs.
_base_ = [
    'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py',
    '../_base_/reliability.py'
]

custom_imports = dict(imports=['rexnet_det'], allow_failed_imports=False)

width = 1.0
# ReXNet(width_mult=w).out_channels for out_indices=(3, 5):
# 1.0x (128, 1280), 1.3x (167, 1664), 1.5x (193, 1920), 2.0x (257, 2560)
backbone_channels = (128, 1280)
head_channels = (*backbone_channels, 512, 256, 256, 128)

model = dict(
    backbone=dict(
        _delete_=True,
        type='ReXNet',
        width_mult=width,
        out_indices=(3, 5),
        norm_cfg=dict(type='BN', eps=0.001, momentum=0.03),
        init_cfg=dict(type='TruncNormal', layer='Conv2d', std=0.03)),
    neck=dict(in_channels=backbone_channels, out_channels=head_channels),
    # SSDLiteHead = SSDHead that can also predict (mmdet 3.3.0's SSDHead
    # raises AttributeError in validation/test, see rexnet_det/models).
    bbox_head=dict(type='SSDLiteHead', in_channels=head_channels))

# rexnet_det's reliability settings (../_base_/reliability.py); mmdet's
# SSDLite config already defines these keys, so they are set here.
default_hooks = dict(checkpoint={{_base_.rexnet_checkpoint_hook}})
custom_hooks = {{_base_.rexnet_custom_hooks}}
train_dataloader = dict(dataset=dict(dataset=dict(type='CheckedCocoDataset')))
val_dataloader = dict(dataset=dict(type='CheckedCocoDataset'))
test_dataloader = val_dataloader
