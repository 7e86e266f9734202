"""Model transformations: free functions over modules (like mmcv's
``fuse_conv_bn``) that turn a trained model into an inference form with the
same outputs."""
from .align import align_channels, align_for_export, is_aligned
from .compiled import (check_compile_backend, compile_for_inference,
                       compile_targets, is_compiled)
from .fuse import fold_bn_into_conv, fuse_model, is_fused

__all__ = ['align_channels', 'align_for_export', 'check_compile_backend',
           'compile_for_inference', 'compile_targets', 'fold_bn_into_conv',
           'fuse_model', 'is_aligned', 'is_compiled', 'is_fused']
