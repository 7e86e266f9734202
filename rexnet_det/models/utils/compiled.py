"""Compiled execution with ``torch.compile``: checks and the inference form.

:func:`check_compile_backend` says, before any work, whether this torch can
compile with a backend; :func:`compile_for_inference` compiles a ReXNet, a
classifier or the dense part of an mmdet detector in place.

A request that cannot be honoured raises an error that names the backend
(or the C++ compiler inductor needs); nothing falls back to eager silently,
so a run that asked for compiled speed never measures eager speed.

Input sizes (``dynamic=None``, torch's default): dynamo compiles for the
first input shape; the first call with another size recompiles once with
symbolic height and width. torch's conv adds one guard on the input area
(``3 * H * W > 20480``, about 83 x 83 px), so inputs on the other side of
it get one more graph, and a new batch size one more; every other size
reuses these (``tests/test_compile.py`` checks the count). ``dynamic=False``
keeps one static graph per shape instead, up to
``torch._dynamo.config.recompile_limit`` (8) per module, after which new
shapes run eagerly; ``dynamic=True`` starts symbolic.
"""
from typing import Callable, List, Optional, Union

import torch
import torch.nn as nn

#: Attribute set on every module :func:`compile_for_inference` compiled.
COMPILED_ATTR = '_rexnet_det_compiled'


def check_compile_backend(backend: Union[str, Callable] = 'inductor'
                          ) -> None:
    """Raise unless ``torch.compile(..., backend=backend)`` can work here.

    Args:
        backend (str or callable): A dynamo backend name (see
            ``torch._dynamo.list_backends()``) or a backend callable.
            Default: ``'inductor'``.

    Raises:
        RuntimeError: This Python/torch build cannot run ``torch.compile``
            at all, or `backend` is ``'inductor'`` and no working C++
            compiler was found (inductor generates C++ for the CPU); the
            message names the compiler it looked for.
        ValueError: `backend` is not a registered dynamo backend; the
            message names it and lists the registered ones.
    """
    import torch._dynamo
    try:
        torch._dynamo.eval_frame.check_if_dynamo_supported()
    except Exception as e:
        raise RuntimeError(f'torch.compile is not supported by this '
                           f'Python/torch ({torch.__version__}): {e}') from e
    if callable(backend):
        return
    known = torch._dynamo.list_backends(exclude_tags=())
    if backend not in known:
        raise ValueError(f'unknown torch.compile backend {backend!r}; '
                         f'registered backends: {", ".join(sorted(known))}')
    if backend == 'inductor':
        from torch._inductor import config
        from torch._inductor.cpp_builder import get_cpp_compiler
        try:
            get_cpp_compiler()
        except Exception as e:
            tried = [c for c in config.cpp.cxx if c]
            raise RuntimeError(
                "torch.compile backend 'inductor' needs a C++ compiler for "
                f'CPU code and none works here (tried {tried}; set CXX to a '
                'working g++/clang++, or use another backend such as '
                "'aot_eager')") from e


def compile_targets(model: nn.Module) -> List[nn.Module]:
    """The modules :func:`compile_for_inference` compiles in `model`.

    For an mmdet detector (a model with ``extract_feat``): the backbone,
    the neck and the dense heads (``rpn_head``, and ``bbox_head`` when it
    is a dense head), whose forwards are pure tensor code; the box
    decoding, NMS and RoI heads after them stay eager. Any other module
    (a :class:`ReXNet`, a classifier) is compiled whole.
    """
    if not hasattr(model, 'extract_feat'):
        return [model]
    from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
    targets = [model.backbone]
    if getattr(model, 'neck', None) is not None:
        targets.append(model.neck)
    for name in ('rpn_head', 'bbox_head'):
        head = getattr(model, name, None)
        if isinstance(head, BaseDenseHead):
            targets.append(head)
    return targets


def compile_for_inference(model: nn.Module, freezing: bool = False,
                          dynamic: Optional[bool] = None,
                          backend: Union[str, Callable] = 'inductor'
                          ) -> nn.Module:
    """Compile `model` for inference with ``torch.compile``, in place.

    Each target module (see :func:`compile_targets`) is compiled with
    ``nn.Module.compile``, so its state dict keys do not change and a
    checkpoint can still be loaded after this call (``tools/test.py
    --compile`` loads after compiling). Compilation happens at the first
    call. Outputs equal eager ones up to float rounding.

    Args:
        model (nn.Module): A :class:`ReXNet`, :class:`ReXNetClassifier`
            (plain or fused), any other module, or an mmdet detector, in
            eval mode.
        freezing (bool): Inductor's ``freezing``: weights become constants
            of the compiled graph (BatchNorm folded, convs prepacked for
            oneDNN). Applies to calls under ``torch.no_grad()`` or
            ``torch.inference_mode()``; weights loaded or changed after the
            first such call are not seen. Needs ``backend='inductor'``.
            Default: False.
        dynamic (bool, optional): ``torch.compile``'s ``dynamic`` (see the
            module docstring for the recompile behaviour). Default: None.
        backend (str or callable): Dynamo backend. Default: ``'inductor'``.

    Returns:
        nn.Module: `model`, compiled in place.

    Raises:
        RuntimeError: `model` is in training mode, or the backend cannot
            run here (:func:`check_compile_backend`).
        ValueError: Unknown backend, or `freezing` with a backend other
            than inductor.

    Example:
        >>> import torch
        >>> from rexnet_det.models import ReXNet, compile_for_inference
        >>> model = compile_for_inference(ReXNet(out_indices=(5, )).eval())
        >>> with torch.no_grad():
        ...     print(tuple(model(torch.rand(1, 3, 64, 64))[0].shape))
        (1, 1280, 2, 2)
    """
    if model.training:
        raise RuntimeError(
            f'compile_for_inference needs an eval-mode model, got '
            f'{type(model).__name__} in training mode; call .eval() first '
            '(to train compiled, use tools/train.py --compile)')
    if freezing and backend != 'inductor':
        raise ValueError(f'freezing=True needs backend=\'inductor\', got '
                         f'backend={backend!r}')
    check_compile_backend(backend)
    options = dict(freezing=True) if freezing else None
    for module in compile_targets(model):
        module.compile(backend=backend, dynamic=dynamic, options=options)
        setattr(module, COMPILED_ATTR,
                dict(backend=backend, freezing=freezing, dynamic=dynamic))
    return model


def is_compiled(model: nn.Module) -> bool:
    """Whether :func:`compile_for_inference` compiled `model` or a part of
    it."""
    return any(hasattr(m, COMPILED_ATTR) for m in model.modules())
