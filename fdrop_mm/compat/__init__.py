"""Compatibility code, in one place: mmengine 0.10.7 checkpoints under torch >= 2.6's weights-only
``torch.load`` (and unreadable checkpoint files named), and DDP on CPU with gloo."""
from .checkpoint_loading import allow_mmengine_checkpoints, name_unreadable_checkpoints
from .cpu_ddp import CPUAwareDistributedDataParallel, init_cpu_process_group

allow_mmengine_checkpoints()
name_unreadable_checkpoints()

__all__ = ['CPUAwareDistributedDataParallel', 'init_cpu_process_group']
