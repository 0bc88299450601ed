"""Compatibility code, in one place: mmengine 0.10.7 checkpoints under torch >= 2.6's weights-only
``torch.load`` (and unreadable checkpoint files named), DDP on CPU with gloo, and the registry's
mmaction2 1.2.0, which lacks the DRN localizer's files that ``import mmaction.models`` needs."""
from .checkpoint_loading import allow_mmengine_checkpoints, name_unreadable_checkpoints
from .cpu_ddp import CPUAwareDistributedDataParallel, init_cpu_process_group
from .mmaction_drn import supply_missing_drn

allow_mmengine_checkpoints()
name_unreadable_checkpoints()
supply_missing_drn()

__all__ = ['CPUAwareDistributedDataParallel', 'init_cpu_process_group']
