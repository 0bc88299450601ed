"""A real one-node Slurm for the tests: munged, slurmctld and slurmd of Debian's slurm-wlm on
this machine, loopback only, everything (config, state, spool, logs, pid files, munge key and
socket) under one folder; clients find it through ``SLURM_CONF``. Facts it relies on:
shared/notes/local_slurm.md."""
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

from tests.conftest import free_ports

# The node is idle 0.03-1.1 s after munged starts on a quiet 2-core machine (shared/notes/
# local_slurm.md); far more for one loaded by a training beside it.
NODE_START_S = 120
# A job step's credential lifetime, and how long Slurm holds a requeued job back before its next
# start (man slurm.conf, AuthInfo): while the node still holds the revoked credential of the job's
# last start, a new start fails ("Job credential revoked"). 120 s by default; 20 s here keeps a
# requeue test short and still covers a step launched on a loaded machine.
CRED_EXPIRE_S = 20
DAEMONS = ('munged', 'mungekey', 'slurmctld', 'slurmd', 'sbatch', 'srun', 'squeue', 'scontrol', 'sinfo')


def missing_programs() -> List[str]:
    """The programs a local cluster needs that are not installed (looked up with sbin added)."""
    path = os.pathsep.join([os.environ.get('PATH', ''), '/usr/sbin', '/sbin'])
    return [name for name in DAEMONS if shutil.which(name, path=path) is None]


def alive(pid: int) -> bool:
    """``pid`` runs (a zombie does not: this container's init may never reap it)."""
    try:
        return Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return False


def holders(folder: Path) -> List[int]:
    """The processes with a file under ``folder`` open (a job step keeps slurmd's log open)."""
    pids = []
    for proc in Path('/proc').iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if any(os.readlink(fd).startswith(f'{folder}/') for fd in (proc / 'fd').iterdir()):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


class LocalSlurm:
    """``start()`` brings the node up (``idle`` within ``deadline_s``), ``stop()`` cancels the
    jobs, ends slurmd, slurmctld and munged (the pids their pid files gave at start, SIGKILL after
    a timeout), then any process still holding a file of the cluster (a job step)."""

    def __init__(self, root: Path, deadline_s: float = NODE_START_S):
        self.root = Path(root)
        self.deadline_s = deadline_s
        self.node = socket.gethostname().split('.')[0]
        self.conf = self.root / 'slurm.conf'
        self.munge = self.root / 'munge'
        self.pid_files = {'slurmd': self.root / 'slurmd.pid', 'slurmctld': self.root / 'slurmctld.pid',
                          'munged': self.munge / 'munged.pid'}
        self.pids: Dict[str, int] = {}

    @property
    def env(self) -> Dict[str, str]:
        """This process's environment with ``SLURM_CONF`` pointing at this cluster."""
        return {**os.environ, 'SLURM_CONF': str(self.conf),
                'PATH': os.pathsep.join([os.environ.get('PATH', ''), '/usr/sbin'])}

    def write_config(self) -> None:
        for folder in ('state', 'spool', 'log'):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self.munge.mkdir(parents=True, exist_ok=True)
        os.chmod(self.munge, 0o755)
        controller_port, node_port = free_ports(2)
        self.conf.write_text('\n'.join([
            'ClusterName=fdroptest',
            'SlurmctldHost=localhost(127.0.0.1)',
            f'SlurmctldPort={controller_port}', f'SlurmdPort={node_port}',
            'SlurmUser=root', 'SlurmdUser=root',
            'AuthType=auth/munge', 'CredType=cred/munge',
            f'AuthInfo=socket={self.munge / "socket"},cred_expire={CRED_EXPIRE_S}',
            f'StateSaveLocation={self.root / "state"}', f'SlurmdSpoolDir={self.root / "spool"}',
            f'SlurmctldPidFile={self.pid_files["slurmctld"]}', f'SlurmdPidFile={self.pid_files["slurmd"]}',
            f'SlurmctldLogFile={self.root / "log" / "slurmctld.log"}',
            f'SlurmdLogFile={self.root / "log" / "slurmd.log"}',
            'ProctrackType=proctrack/linuxproc', 'TaskPlugin=task/none',
            'SelectType=select/cons_tres', 'SelectTypeParameters=CR_Core',
            'AccountingStorageType=accounting_storage/none', 'JobAcctGatherType=jobacct_gather/none',
            'MpiDefault=none', 'MailProg=/bin/true', 'ReturnToService=2',
            'MinJobAge=600',
            f'NodeName={self.node} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory=1000 State=UNKNOWN',
            'PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP', '']))

    def start(self) -> None:
        self.write_config()
        key = self.munge / 'munge.key'
        subprocess.run(['mungekey', '--create', f'--keyfile={key}'], check=True, capture_output=True,
                       env=self.env, timeout=30)
        self.daemon(['munged', '--force', f'--key-file={key}', f'--socket={self.munge / "socket"}',
                     f'--pid-file={self.pid_files["munged"]}', f'--log-file={self.munge / "munged.log"}',
                     f'--seed-file={self.munge / "munged.seed"}'])
        self.daemon(['slurmctld', '-f', str(self.conf)])
        self.daemon(['slurmd', '-f', str(self.conf), '-N', self.node])
        deadline = time.monotonic() + self.deadline_s
        while time.monotonic() < deadline:
            if self.pid('slurmctld') is None:
                raise RuntimeError(f'slurmctld exited: {self.log_tail("slurmctld")}')
            state = self.command(['sinfo', '-h', '-n', self.node, '-o', '%T'], timeout=5, check=False)
            if state.strip() == 'idle':
                return
            time.sleep(0.2)
        raise RuntimeError(f'node {self.node} not idle after {self.deadline_s} s: '
                           f'{self.log_tail("slurmctld")}\n{self.log_tail("slurmd")}')

    def daemon(self, args: List[str]) -> None:
        """Start a daemon (it forks into the background) and keep the pid its pid file names."""
        subprocess.run(args, check=True, capture_output=True, env=self.env, timeout=30)
        deadline = time.monotonic() + 10
        while self.pid(args[0]) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f'{args[0]} wrote no pid file {self.pid_files[args[0]]}')
            time.sleep(0.05)
        self.pids[args[0]] = self.pid(args[0])

    def command(self, args: List[str], timeout: float = 30, check: bool = True) -> str:
        """A Slurm client command against this cluster; its stdout."""
        try:
            proc = subprocess.run(args, capture_output=True, text=True, env=self.env, timeout=timeout)
        except subprocess.TimeoutExpired:
            if check:
                raise
            return ''
        if check and proc.returncode != 0:
            raise RuntimeError(f'{" ".join(args)} failed ({proc.returncode}): {proc.stderr}')
        return proc.stdout

    def logs(self) -> str:
        """The end of every daemon's log, for a cluster that did not start or a job that did not complete."""
        return '\n'.join(f'--- {daemon}:\n{self.log_tail(daemon)}' for daemon in ('slurmctld', 'slurmd', 'munged'))

    def log_tail(self, daemon: str, lines: int = 15) -> str:
        log = self.munge / 'munged.log' if daemon == 'munged' else self.root / 'log' / f'{daemon}.log'
        return ''.join(log.read_text().splitlines(keepends=True)[-lines:]) if log.is_file() else f'(no {log})'

    def pid(self, daemon: str) -> Optional[int]:
        """The daemon's pid if its pid file names a live process."""
        try:
            pid = int(self.pid_files[daemon].read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if alive(pid) else None

    def stop(self, timeout_s: float = 10) -> List[str]:
        """Cancel every job (waiting up to ``timeout_s`` for the queue to empty), stop slurmd,
        slurmctld, munged in that order; what needed SIGKILL."""
        killed = []
        if self.pids.get('slurmctld') and alive(self.pids['slurmctld']):
            self.command(['scancel', '--user=root'], timeout=10, check=False)
            deadline = time.monotonic() + timeout_s
            while (self.command(['squeue', '-h', '-o', '%i'], timeout=5, check=False).strip()
                   and time.monotonic() < deadline):
                time.sleep(0.5)
        for daemon in ('slurmd', 'slurmctld', 'munged'):
            pid = self.pids.get(daemon)
            if pid is None or not alive(pid):
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
                killed.append(daemon)
        for pid in holders(self.root):
            os.kill(pid, signal.SIGKILL)
            killed.append(f'pid {pid} (holding a file of {self.root})')
        return killed

    def running(self) -> List[str]:
        """What of this cluster still runs: its daemons, processes holding its files."""
        return ([daemon for daemon, pid in self.pids.items() if alive(pid)]
                + [f'pid {pid}' for pid in holders(self.root)])
