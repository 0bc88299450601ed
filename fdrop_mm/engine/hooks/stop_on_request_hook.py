"""StopOnRequestHook: a training asked from outside to stop (a Slurm job whose time limit is near,
see fdrop_mm.experiments.slurm) stops cleanly at an iteration boundary, in a state its rerun
resumes from exactly.

The request is a file, ``<work_dir>/stop_requested`` (what the job's batch script writes when
Slurm's ``--signal=B:USR1@<seconds>`` warning arrives), not a signal to the training processes:
Slurm signals every process of a job step, data loader workers included, which a signal they
do not handle would kill. Rank 0 looks for the file after every iteration and broadcasts what it
saw, so under DDP all ranks stop after the same iteration.

Where it stops follows what mmengine's loops resume exactly:

- ``IterBasedTrainLoop`` skips the batches a resumed run has already seen, so the hook saves a
  checkpoint at the iteration (through the config's CheckpointHook: its file names, ``out_dir``,
  ``max_keep_ckpts`` and ``last_checkpoint``) and nothing is lost.
- ``EpochBasedTrainLoop`` (and any other loop) restarts a resumed epoch from its first batch, so
  a mid-epoch checkpoint would make the resumed run see part of that epoch twice. The hook saves
  none: the run resumes from the last epoch's checkpoint, losing at most one epoch of training.
  A request during an epoch's last iteration lets the epoch end (its checkpoint, its validation)
  and stops after the next iteration.
"""
import os
import time
from pathlib import Path
from typing import Optional

import torch
from mmengine.dist import broadcast, is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop

STOP_FILE = 'stop_requested'
# sysexits.h's EX_TEMPFAIL, "try again later": the training stopped on request and resumes.
STOPPED_EXIT_CODE = 75
# When this process imported fdrop_mm (tools/train.py does first): a stop file older is stale.
PROCESS_START = time.time()


class TrainingStopped(Exception):
    """Raised on every rank at the iteration where training stops on request; fdrop_mm.apis.train
    ends the process group and exits with ``STOPPED_EXIT_CODE``."""


@HOOKS.register_module()
class StopOnRequestHook(Hook):
    """Stop training at the first iteration boundary after ``stop_file`` (default
    ``<work_dir>/stop_requested``) appears, removing it; see the module's docstring for where a
    checkpoint is saved. Outside a Slurm job, a file older than this process is a stale request
    (left by a job killed after writing it) and is removed when training starts; inside one, the
    batch script removes earlier files when the job starts, and a warning that came while the
    stage started up is acted on. Runs after every other hook's ``after_train_iter`` (priority
    LOWEST), so the iteration's regular checkpoint is saved first."""

    priority = 'LOWEST'

    def __init__(self, stop_file: Optional[str] = None) -> None:
        self.stop_file = None if stop_file is None else Path(stop_file)

    def before_train(self, runner) -> None:
        if self.stop_file is None:
            self.stop_file = Path(runner.work_dir) / STOP_FILE
        # in a Slurm job the batch script removed any earlier file: one there now is this job's warning
        stale = ('SLURM_JOB_ID' not in os.environ and self.stop_file.is_file()
                 and self.stop_file.stat().st_mtime < PROCESS_START)
        if is_main_process() and stale:
            self.stop_file.unlink(missing_ok=True)
            runner.logger.warning(f'removed {self.stop_file}: a stop request older than this run')

    def requested(self) -> bool:
        """Whether rank 0 sees the stop file, the same answer on every rank."""
        flag = torch.tensor([int(is_main_process() and self.stop_file.is_file())])
        broadcast(flag, src=0)
        return bool(flag.item())

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not self.requested():
            return
        loop = runner.train_loop
        by_iteration = isinstance(loop, IterBasedTrainLoop)
        if not by_iteration and batch_idx + 1 == len(loop.dataloader):
            return  # the epoch's checkpoint and validation come next; stop after the next iteration
        if by_iteration:
            kept = self.save_iteration(runner)
        else:
            kept = (f'no mid-epoch checkpoint ({type(loop).__name__} would not skip this epoch\'s '
                    f'seen batches on resume): a resumed run starts from {last_checkpoint(runner)}')
        if is_main_process():
            self.stop_file.unlink(missing_ok=True)
        message = (f'stopped on request ({self.stop_file}) after iteration {runner.iter + 1} '
                   f'(epoch {runner.epoch + 1}, batch {batch_idx + 1}); {kept}')
        runner.logger.info(message)
        raise TrainingStopped(message)

    def after_train(self, runner) -> None:
        if is_main_process() and self.stop_file.is_file():
            self.stop_file.unlink()
            runner.logger.info(f'training finished before the stop request {self.stop_file}; removed it')

    @staticmethod
    def save_iteration(runner) -> str:
        """Save this iteration's checkpoint through the CheckpointHook (unless it just did);
        what was kept."""
        hook = next((hook for hook in runner.hooks if isinstance(hook, CheckpointHook)), None)
        if hook is None or hook.by_epoch:
            return (f'no checkpoint saved: no CheckpointHook saving by iteration; a resumed run starts '
                    f'from {last_checkpoint(runner)}')
        path = hook.file_backend.join_path(hook.out_dir, hook.filename_tmpl.format(runner.iter + 1))
        if getattr(hook, 'last_ckpt', None) != path:
            hook._save_checkpoint(runner)
        return f'saved {path}: a resumed run continues from the next iteration'


def last_checkpoint(runner) -> str:
    """The checkpoint ``<work_dir>/last_checkpoint`` names, or that there is none."""
    pointer = Path(runner.work_dir) / 'last_checkpoint'
    return pointer.read_text().strip() if pointer.is_file() else 'the start (no checkpoint yet)'
