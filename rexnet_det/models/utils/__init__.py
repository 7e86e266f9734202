"""Model transformations: free functions over modules (like mmcv's
``fuse_conv_bn``) that turn a trained model into an inference form with the
same outputs."""
from .fuse import fold_bn_into_conv, fuse_model, is_fused

__all__ = ['fold_bn_into_conv', 'fuse_model', 'is_fused']
