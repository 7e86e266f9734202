# SSDLite-ReXNet-2.0x from scratch; see ssdlite_rexnet-1.0x_8xb24-600e_coco.py.
_base_ = './ssdlite_rexnet-1.0x_8xb24-600e_coco.py'

width = 2.0
backbone_channels = (257, 2560)  # ReXNet(width_mult=2.0, out_indices=(3, 5))
head_channels = (*backbone_channels, 512, 256, 256, 128)

model = dict(
    backbone=dict(width_mult=width),
    neck=dict(in_channels=backbone_channels, out_channels=head_channels),
    bbox_head=dict(in_channels=head_channels))
