"""Checkpoints that survive a crash at any moment.

mmengine 0.10.7's ``CheckpointHook`` (read in
``mmengine/hooks/checkpoint_hook.py``, ``_save_checkpoint_with_step``):

1. with ``max_keep_ckpts`` it deletes the oldest checkpoint *before*
   writing the new one. With ``max_keep_ckpts=1`` that is the file
   ``last_checkpoint`` points to, so a crash while saving leaves nothing to
   resume from;
2. ``LocalBackend.put`` writes the file in place (``open(path, 'wb')``),
   without fsync: a crash mid-write leaves a truncated ``iter_N.pth``, and
   re-saving a name ``last_checkpoint`` already points to (a restarted run,
   ``save_last``) leaves it pointing at the torn file;
3. ``last_checkpoint`` itself is rewritten in place.

:class:`AtomicCheckpointHook` writes every file to a temporary name in the
same folder, fsyncs it and ``os.replace``-s it into place, updates
``last_checkpoint`` the same way only after the checkpoint is complete, and
deletes old checkpoints last. At any instant ``last_checkpoint`` names a
complete file.
"""
import os
import os.path as osp

from mmdet.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, get_file_backend, register_backend
from mmengine.hooks import CheckpointHook

from ..utils.io import atomic_write, is_temporary

#: Name under which :class:`AtomicLocalBackend` is registered in mmengine's
#: file backends (a new name: mmengine's own backends are left alone).
ATOMIC_BACKEND = 'rexnet_det_atomic_local'


@register_backend(ATOMIC_BACKEND)
class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend, with atomic ``put``/``put_text``."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(obj, os.fspath(filepath))

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write(obj.encode(encoding), os.fspath(filepath))


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` that never leaves a torn or missing checkpoint
    behind ``last_checkpoint``.

    Takes the same arguments as mmengine's ``CheckpointHook``; use it as
    ``default_hooks.checkpoint.type='AtomicCheckpointHook'``. Local folders
    are written through :class:`AtomicLocalBackend`; other backends (s3,
    ...) keep mmengine's behaviour.
    """

    def before_train(self, runner) -> None:
        super().before_train(runner)
        args = dict(self.backend_args or {})
        if ('backend' not in args and self.file_client_args is None
                and type(self.file_backend) is LocalBackend):
            args['backend'] = ATOMIC_BACKEND
            self.backend_args = args
            self.file_backend = get_file_backend(self.out_dir,
                                                 backend_args=args)
        if is_main_process() and isinstance(self.file_backend,
                                            AtomicLocalBackend):
            # temporary files of a run killed while saving
            for folder in {self.out_dir, runner.work_dir}:
                for name in os.listdir(folder) if osp.isdir(folder) else ():
                    if is_temporary(name):
                        os.remove(osp.join(folder, name))

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        # Overrides mmengine 0.10's (private) method of CheckpointHook, whose
        # bookkeeping it repeats, but the stale file is deleted only after
        # the new checkpoint and `last_checkpoint` are in place.
        # tests/test_upstream.py pins the mmengine version this was read in.
        stale = None
        if self.max_keep_ckpts > 0 and not (
                self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                stale = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir,
                                                     ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return
        atomic_write(self.last_ckpt, osp.join(runner.work_dir,
                                              'last_checkpoint'))
        if stale is not None and stale != step:
            path = self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(stale))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):
                self.file_backend.rmtree(path)
