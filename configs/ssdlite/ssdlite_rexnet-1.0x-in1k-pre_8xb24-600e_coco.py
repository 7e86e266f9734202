# SSDLite-ReXNet-1.0x initialised from the official ImageNet checkpoint.
# Download rexnetv1_1.0.pth (clovaai/rexnet README, "Pretrained models") to
# checkpoints/, or point elsewhere on the command line:
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/rexnetv1_1.0.pth
# clovaai, timm and rexnet_det layouts all load (strictly) as they are.
_base_ = './ssdlite_rexnet-1.0x_8xb24-600e_coco.py'

pretrained = 'checkpoints/rexnetv1_1.0.pth'

model = dict(
    backbone=dict(
        # BN eps of the ImageNet checkpoint (PyTorch default 1e-5);
        # _delete_ drops the scratch config's eps=1e-3.
        norm_cfg=dict(_delete_=True, type='BN', momentum=0.03),
        init_cfg=dict(_delete_=True, type='Pretrained',
                      checkpoint=pretrained)))
