"""mmdet 3.3.0's SSDHead, fixed so that it can predict.

``SSDHead.__init__`` skips ``AnchorHead.__init__`` (it computes its own
softmax cross-entropy with hard negative mining), so it never gets a
``loss_cls`` attribute. ``BaseDenseHead._predict_by_feat_single`` reads
``self.loss_cls.custom_cls_channels`` and crashes with
``AttributeError: 'SSDHead' object has no attribute 'loss_cls'``: SSD and
SSDLite cannot validate or test.

:class:`SSDLiteHead` is SSDHead with exactly one addition: ``loss_cls`` is
``None``. ``getattr(None, 'custom_cls_channels', False)`` is False, which is
the right answer (SSD's scores are a plain softmax over ``num_classes + 1``),
and nothing else reads it. Training is unchanged.
"""
from mmdet.models.dense_heads import SSDHead
from mmdet.registry import MODELS


@MODELS.register_module()
class SSDLiteHead(SSDHead):
    """:class:`mmdet.models.SSDHead` that can also predict (see module doc).

    Takes exactly the arguments of ``SSDHead``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # The one fix: SSD computes its classification loss itself and has
        # no loss module, but prediction asks the loss module for custom
        # class channels.
        self.loss_cls = None
