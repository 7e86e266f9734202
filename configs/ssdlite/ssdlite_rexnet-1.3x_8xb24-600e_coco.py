# SSDLite-ReXNet-1.3x from scratch; see ssdlite_rexnet-1.0x_8xb24-600e_coco.py.
_base_ = './ssdlite_rexnet-1.0x_8xb24-600e_coco.py'

width = 1.3
backbone_channels = (167, 1664)  # ReXNet(width_mult=1.3, out_indices=(3, 5))
head_channels = (*backbone_channels, 512, 256, 256, 128)

model = dict(
    backbone=dict(width_mult=width),
    neck=dict(in_channels=backbone_channels, out_channels=head_channels),
    bbox_head=dict(in_channels=head_channels))
