"""The ``rexnet_det`` registry scope: children of mmdet's registries.

rexnet_det registers everything in mmdet's registries, so our configs (and
any config with ``default_scope='mmdet'``) find ReXNet, our hooks, datasets
and transforms. But when a downstream config inherits ours as
``_base_ = ['rexnet_det::...']``, mmengine stamps ``_scope_='rexnet_det'`` on
the dicts those bases define, and building them switches to the registries
of scope ``rexnet_det``. These children hold nothing of their own: a lookup
in them falls through to mmdet's registry (and from there to mmengine's),
which is what a ``rexnet_det::`` base means.
"""
import mmdet.registry as mmdet_registry
from mmengine.registry import Registry

SCOPE = 'rexnet_det'


def _child(parent: Registry) -> Registry:
    # a lookup falls through to the parent's entries only once they are
    # imported: import mmdet's modules of this kind and our package
    return Registry(parent.name, parent=parent, scope=SCOPE,
                    locations=[*parent._locations, 'rexnet_det'])


RUNNERS = _child(mmdet_registry.RUNNERS)
RUNNER_CONSTRUCTORS = _child(mmdet_registry.RUNNER_CONSTRUCTORS)
LOOPS = _child(mmdet_registry.LOOPS)
HOOKS = _child(mmdet_registry.HOOKS)
DATASETS = _child(mmdet_registry.DATASETS)
DATA_SAMPLERS = _child(mmdet_registry.DATA_SAMPLERS)
TRANSFORMS = _child(mmdet_registry.TRANSFORMS)
MODELS = _child(mmdet_registry.MODELS)
MODEL_WRAPPERS = _child(mmdet_registry.MODEL_WRAPPERS)
WEIGHT_INITIALIZERS = _child(mmdet_registry.WEIGHT_INITIALIZERS)
OPTIMIZERS = _child(mmdet_registry.OPTIMIZERS)
OPTIM_WRAPPERS = _child(mmdet_registry.OPTIM_WRAPPERS)
OPTIM_WRAPPER_CONSTRUCTORS = _child(
    mmdet_registry.OPTIM_WRAPPER_CONSTRUCTORS)
PARAM_SCHEDULERS = _child(mmdet_registry.PARAM_SCHEDULERS)
METRICS = _child(mmdet_registry.METRICS)
EVALUATOR = _child(mmdet_registry.EVALUATOR)
TASK_UTILS = _child(mmdet_registry.TASK_UTILS)
VISUALIZERS = _child(mmdet_registry.VISUALIZERS)
VISBACKENDS = _child(mmdet_registry.VISBACKENDS)
LOG_PROCESSORS = _child(mmdet_registry.LOG_PROCESSORS)
