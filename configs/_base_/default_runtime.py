# mmdet's default runtime with rexnet_det's reliability settings.
_base_ = ['mmdet::_base_/default_runtime.py', './reliability.py']

default_hooks = dict(checkpoint={{_base_.rexnet_checkpoint_hook}})
custom_hooks = {{_base_.rexnet_custom_hooks}}
