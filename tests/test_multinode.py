"""tools/dist_train.sh across two nodes: two torchrun agents on this machine (NNODES=2,
NODE_RANK=0/1, MASTER_ADDR=127.0.0.1, one CPU process each, gloo over loopback) train the
committed ResNet-20 + FocusedDropout config on generated CIFAR-100; the ranks must end with the
same parameters (also those of the checkpoint rank 0 saved) and the same focused steps."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from fdrop_mm.experiments.sweep import tiny_options
from fdrop_mm.experiments.tables import select_cells
from fdrop_mm.tiny_data import generate
from tests.conftest import DUMP_HOOK, REPO, free_port

CELL = ('2', 'resnet20/fd')  # configs/cifar/table2/resnet20_fd_1xb128_cifar100.py
TIMEOUT = 600  # seconds for both agents; the run takes about a minute on 2 cores


def start_node(node_rank: int, config, data, env, log):
    """One torchrun agent (one node with one process) through tools/dist_train.sh."""
    cell = select_cells([CELL[0]], [CELL[1]])[0]
    options = tiny_options(cell, data) + [
        f'{loader}.batch_size=2' for loader in ('train_dataloader', 'val_dataloader')]  # 4 steps per epoch
    node_env = {**env, 'NNODES': '2', 'NODE_RANK': str(node_rank), 'MASTER_ADDR': '127.0.0.1'}
    return subprocess.Popen(['bash', str(REPO / 'tools/dist_train.sh'), str(config), '1',
                             '--cfg-options', *options],
                            env=node_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.slow
def test_two_nodes_end_with_identical_parameters_and_focused_steps(tmp_path):
    data = tmp_path / 'data'
    generate(data, only=('cifar100', ), seed=0)
    (tmp_path / 'dump_per_rank.py').write_text(DUMP_HOOK)
    config = tmp_path / 'two_nodes.py'
    config.write_text(
        f"_base_ = '{REPO / 'configs/cifar/table2/resnet20_fd_1xb128_cifar100.py'}'\n"
        "custom_imports = dict(imports=['fdrop_mm', 'dump_per_rank'], allow_failed_imports=False)\n"
        "custom_hooks = [dict(type='FocusedDropoutHook'), dict(type='DumpPerRank')]\n"
        "randomness = dict(seed=0, diff_rank_seed=True)  # ranks draw different γ and data order\n"
        "env_cfg = dict(dist_cfg=dict(backend='gloo'))\n"
        f"work_dir = '{tmp_path / 'work'}'\n")
    env = {**os.environ, 'PYTHON': sys.executable, 'PORT': str(free_port()), 'PYTHONPATH': str(tmp_path),
           'CIFAR100_ROOT': str(data / 'cifar100'), 'GLOO_SOCKET_IFNAME': 'lo',
           'OMP_NUM_THREADS': '1'}
    logs = [open(tmp_path / f'node{rank}.log', 'w') for rank in (0, 1)]
    nodes = [start_node(rank, config, data, env, log) for rank, log in enumerate(logs)]
    try:
        deadline = time.monotonic() + TIMEOUT
        codes = [node.wait(timeout=max(1.0, deadline - time.monotonic())) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
        for log in logs:
            log.close()
    output = '\n'.join(f'--- node {r}\n' + (tmp_path / f'node{r}.log').read_text()[-3000:] for r in (0, 1))
    assert codes == [0, 0], output

    ranks = [torch.load(tmp_path / 'work' / f'rank{r}.pt') for r in (0, 1)]
    active = ranks[0]['active']
    assert len(active) == 8 and ranks[1]['active'] == active
    checkpoint = torch.load(tmp_path / 'work' / 'epoch_2.pth', map_location='cpu')
    assert checkpoint['meta']['focused_dropout']['seed'] == 0  # rank 0's seed (rank 1's is 1), broadcast
    assert 0 < sum(active) < 8, 'the test needs focused and plain steps'
    saved = checkpoint['state_dict']
    for name, value in ranks[0]['params'].items():
        assert torch.equal(value, ranks[1]['params'][name]), name
        assert torch.equal(value, saved[name]), name
