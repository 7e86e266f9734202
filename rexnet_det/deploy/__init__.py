"""Deployment helpers: fused inference form, model names, checkpoints."""
from .compare import max_relative_error
from .fuse import (fold_bn_into_conv, fuse_model, fused_checkpoint,
                   is_fused, load_fused)
from .models import (ModelSpec, build_from_spec, infer_spec, load_model,
                     parse_spec)

__all__ = [
    'fold_bn_into_conv', 'fuse_model', 'fused_checkpoint', 'is_fused',
    'load_fused', 'ModelSpec', 'build_from_spec', 'infer_spec', 'load_model',
    'parse_spec', 'max_relative_error'
]
