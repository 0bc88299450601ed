"""Multi-process training without GPUs (gloo), for CPU runs and CI."""
import os
import subprocess

import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUAwareDistributedDataParallel(MMDistributedDataParallel):
    """MMDistributedDataParallel that also wraps CPU modules.

    mmengine's Runner always passes ``device_ids=[LOCAL_RANK]``, which
    torch's DDP refuses for a module on the CPU; drop it there.
    """

    def __init__(self, module, device_ids=None, **kwargs):
        if next(module.parameters()).device.type == 'cpu':
            device_ids = None
        super().__init__(module=module, device_ids=device_ids, **kwargs)


def init_cpu_process_group() -> None:
    """Initialise gloo from torchrun's environment (RANK, WORLD_SIZE, MASTER_*).

    mmengine 0.10.7's pytorch launcher calls ``torch.cuda.set_device``
    unconditionally, which fails without a GPU; a Runner skips its own init
    when a process group already exists, so this runs first.
    """
    for var in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'):
        if var not in os.environ:
            raise RuntimeError(f'--launcher pytorch needs ${var}: start with tools/dist_train.sh or torchrun')
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')


def set_rendezvous_from_slurm() -> None:
    """torch's RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT from an srun task's
    variables, as mmengine's slurm launcher sets them: the master is the first node of
    SLURM_NODELIST (its name must resolve), port MASTER_PORT or 29500."""
    for var in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'):
        if var not in os.environ:
            raise RuntimeError(f'--launcher slurm needs ${var}: start with tools/slurm_train.sh or srun')
    if 'MASTER_ADDR' not in os.environ:
        nodes = subprocess.run(['scontrol', 'show', 'hostnames', os.environ['SLURM_NODELIST']],
                               capture_output=True, text=True, check=True, timeout=60).stdout.split()
        os.environ['MASTER_ADDR'] = nodes[0]
    os.environ.setdefault('MASTER_PORT', '29500')
    os.environ.update(RANK=os.environ['SLURM_PROCID'], WORLD_SIZE=os.environ['SLURM_NTASKS'],
                      LOCAL_RANK=os.environ.get('SLURM_LOCALID', '0'))
