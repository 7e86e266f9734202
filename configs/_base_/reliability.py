# Reliability settings shared by every rexnet_det config (one place).
# mmengine forbids sibling bases to define the same top-level key, so this
# file only defines names no mmdet base uses; the configs that inherit it
# pick the values up with {{_base_.<name>}} (see ./default_runtime.py).
custom_imports = dict(imports=['rexnet_det'], allow_failed_imports=False)

# Write checkpoints atomically: a crash never leaves a torn file behind
# `last_checkpoint` (rexnet_det.engine.AtomicCheckpointHook).
rexnet_checkpoint_hook = dict(type='AtomicCheckpointHook')
rexnet_custom_hooks = [
    dict(type='NumClassCheckHook'),
    # stop at the first NaN/inf loss, before bad weights are saved
    dict(type='NonFiniteLossHook'),
    # load_from / resume / test check every entry first and refuse
    # checkpoints that do not cover the whole model (e.g. an ImageNet file)
    # or hold garbage; see allow_partial_load, allow_nonfinite_weights
    dict(type='StrictLoadHook'),
]
# Set True (--cfg-options allow_partial_load=True) to let load_from and
# tools/test.py load checkpoints that miss tensors, as mmengine does.
allow_partial_load = False
# Set True (--cfg-options allow_nonfinite_weights=True) to let them load
# weights holding NaN or Inf.
allow_nonfinite_weights = False
