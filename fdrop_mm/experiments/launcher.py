"""Training and testing commands through this repository's tools, and running them.

One launcher serves the pipeline (§5.3) and the classification sweeps (§5.1-5.2): ``none``
runs tools/train.py and tools/test.py in this machine's one process, ``pytorch`` runs
tools/dist_train.sh and tools/dist_test.sh with ``gpus`` processes, ``slurm`` trains through
tools/slurm_train.sh and tests in one local process (testing is short next to training): what a
stage's Slurm job does (the jobs themselves are submitted by ``slurm``).
"""
import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import List, Mapping, Optional, Sequence

from ..apis import LAUNCHERS
from ..engine.hooks.stop_on_request_hook import STOPPED_EXIT_CODE

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / 'tools'
CONFIGS = REPO / 'configs'
# mmengine's launchers (LAUNCHERS: tools/train.py's --launcher) that start a run from here: tools/
# has a script for each but mpi
DRIVER_LAUNCHERS = tuple(launcher for launcher in LAUNCHERS if launcher != 'mpi')


@dataclasses.dataclass(frozen=True)
class Launcher:
    """How training and testing runs start; ``env`` is added to this process's environment and
    ``tag`` prefixes what is printed."""
    kind: str = 'none'
    gpus: int = 1
    partition: Optional[str] = None
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    tag: str = 'pipeline'

    def __post_init__(self):
        if self.kind not in DRIVER_LAUNCHERS:
            raise ValueError(f'--launcher {self.kind!r}: expected one of {", ".join(DRIVER_LAUNCHERS)}')
        if self.gpus < 1:
            raise ValueError(f'--gpus {self.gpus}: needs at least 1')
        if self.kind == 'slurm' and not self.partition:
            raise ValueError('--launcher slurm needs --partition')
        if self.kind == 'none' and self.gpus != 1:
            raise ValueError('--gpus > 1 needs --launcher pytorch or slurm')

    def for_experiment(self, tag: str, **env) -> 'Launcher':
        """This launcher printing as ``tag``, with ``env`` added to its environment."""
        return dataclasses.replace(self, tag=tag, env={**self.env, **env})

    def environment(self) -> dict:
        """The runs' environment: this process's plus ``env``, this interpreter as the shell
        scripts' ``PYTHON`` and ``GPUS`` for tools/slurm_train.sh."""
        return {**os.environ, 'PYTHON': sys.executable, 'GPUS': str(self.gpus), **self.env}

    def train_command(self, config, work_dir: Path, options: Sequence[str] = (),
                      resume: Optional[Path] = None) -> List[str]:
        """The command that trains ``config`` into ``work_dir`` with ``--cfg-options options``,
        continuing from the checkpoint ``resume`` if given (tools/train.py's ``--resume``)."""
        extra = ['--work-dir', work_dir, *(['--resume', resume] if resume else []),
                 *(['--cfg-options', *options] if options else [])]
        if self.kind == 'none':
            command = [sys.executable, TOOLS / 'train.py', config, *extra]
        elif self.kind == 'pytorch':
            command = ['bash', TOOLS / 'dist_train.sh', config, self.gpus, *extra]
        else:
            command = ['bash', TOOLS / 'slurm_train.sh', self.partition, work_dir.name, config,
                       work_dir, *extra[2:]]
        return [str(part) for part in command]

    def test_command(self, config, checkpoint, work_dir: Path, metrics_out: Path,
                     options: Sequence[str] = ()) -> List[str]:
        """The command that tests ``checkpoint`` and writes its metrics to ``metrics_out``."""
        extra = ['--work-dir', work_dir, '--metrics-out', metrics_out,
                 *(['--cfg-options', *options] if options else [])]
        if self.kind == 'pytorch':
            command = ['bash', TOOLS / 'dist_test.sh', config, checkpoint, self.gpus, *extra]
        else:
            command = [sys.executable, TOOLS / 'test.py', config, checkpoint, *extra]
        return [str(part) for part in command]

    def run(self, command: Sequence[str], log: Path, append: bool = False) -> None:
        """Run ``command`` in the repository with its output in ``log`` (after what is there with
        ``append``); a failure is an error showing the log's end."""
        print(f'[{self.tag}] $ {" ".join(command)}  (log: {log})', flush=True)
        with open(log, 'a' if append else 'w') as out:
            proc = subprocess.run(command, env=self.environment(), cwd=REPO, stdout=out,
                                  stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            tail = ''.join(log.read_text().splitlines(keepends=True)[-30:])
            if proc.returncode == STOPPED_EXIT_CODE:
                raise RuntimeError(f'training stopped on request (exit {STOPPED_EXIT_CODE}: a stop request '
                                   f'such as Slurm\'s time-limit warning); it resumes when the stage runs '
                                   f'again: see {log}\n{tail}')
            how = (f'killed by {signal.Signals(-proc.returncode).name}' if proc.returncode < 0
                   else f'exit {proc.returncode}')
            raise RuntimeError(f'stage failed ({how}): see {log}\n{tail}')

    def train(self, config, work_dir: Path, options: Sequence[str] = (), resume: Optional[Path] = None) -> Path:
        """Train, from the checkpoint ``resume`` if given (the output then goes after the
        interrupted run's in ``train.out``); return the last checkpoint."""
        self.run(self.train_command(config, work_dir, options, resume), work_dir / 'train.out',
                 append=resume is not None)
        return last_checkpoint(work_dir)

    def test(self, config, checkpoint, work_dir: Path, options: Sequence[str] = ()) -> dict:
        """Test into ``work_dir/test``; return the metrics (also in ``work_dir/metrics.json``)."""
        metrics = work_dir / 'metrics.json'
        self.run(self.test_command(config, checkpoint, work_dir / 'test', metrics, options),
                 work_dir / 'test.out')
        return json.loads(metrics.read_text())


def last_checkpoint(work_dir: Path) -> Path:
    """The checkpoint mmengine's CheckpointHook recorded last in ``work_dir``."""
    pointer = work_dir / 'last_checkpoint'
    if not pointer.is_file():
        raise RuntimeError(f'training finished without a checkpoint: no {pointer}')
    checkpoint = Path(pointer.read_text().strip())
    if not checkpoint.is_file():
        raise RuntimeError(f'{pointer} names {checkpoint}, which does not exist')
    return checkpoint
