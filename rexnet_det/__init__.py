"""rexnet_det: ReXNet backbones for MMDetection.

Importing the package registers its models, hooks, datasets and transforms
in mmdet's registries and installs the one mmengine integration
(:mod:`rexnet_det.integration`: safe checkpoint loading on every scheme and
``rexnet_det::`` config bases).

The package is built in floors; each imports only from those below it:

1. :mod:`~rexnet_det.models` (arch table, variants, layers, backbone,
   classifier, heads, model transformations);
2. :mod:`~rexnet_det.checkpoint` (safe loading, layouts, strict loader);
3. :mod:`~rexnet_det.engine`, :mod:`~rexnet_det.datasets`,
   :mod:`~rexnet_det.evaluation`;
4. :mod:`~rexnet_det.deploy`.

:mod:`~rexnet_det.utils` (errors, atomic files, CLI helpers) sits below
them all; :mod:`~rexnet_det.integration` above.
"""
from . import datasets, engine, evaluation  # noqa: F401  registrations
from . import registry  # noqa: F401  the `rexnet_det` scope
from .checkpoint import (CheckpointError, CheckpointMismatchError,
                         UnsafeCheckpointError, convert_state_dict,
                         load_checkpoint_file, load_pretrained,
                         safe_torch_load, trusted_globals)
from .integration import install as _install_integration
from .models import (VARIANTS, ReXNet, ReXNetClassifier, SSDLiteHead,
                     get_variant, rexnet_arch)
from .version import __version__

_install_integration()

__all__ = [
    'ReXNet', 'ReXNetClassifier', 'SSDLiteHead', 'rexnet_arch', 'VARIANTS',
    'get_variant', 'load_pretrained', 'load_checkpoint_file',
    'convert_state_dict', 'safe_torch_load', 'trusted_globals',
    'CheckpointError', 'CheckpointMismatchError', 'UnsafeCheckpointError',
    '__version__'
]
