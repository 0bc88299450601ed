"""The Slurm path against a real Slurm (tests/slurm_cluster.py: munged, slurmctld and slurmd on
this machine, loopback only, started for this module and stopped at its end): two srun tasks
of tools/slurm_train.sh training with the hook on CPU, a sweep submitted as a job graph giving
the table of a local run, a failed stage whose dependants never run, reported by the driver's
rerun, a training job cancelled with scancel that the rerun reports and resumes, and one warned
of its time limit (USR1 to its batch shell) that stops, requeues itself and resumes (marked
slow: minutes). Skipped, with the reason, where Slurm is not installed or
cannot start, unless tools/run_tests.sh installed it (``FDROP_REQUIRE_SLURM``): then a cluster
that does not start fails with its logs. The dry run (the printed sbatch scripts) needs no cluster."""
import os
import re
import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config

from tests.conftest import DUMP_HOOK, REPO, classifier_cfg, free_ports
from tests.slurm_cluster import LocalSlurm, missing_programs

# Each wait for a tool, a training or the job queue. On the 2-core machine shared by five sessions
# (load average 9-12, these tests at lower priority) one dry run took 288 s, the whole sweep test
# 590 s, and slurm_train.sh's two 10-iteration tasks ran past 240 s: 3x and more.
DEADLINE_S = 1200
# tools/run_tests.sh sets it where it installed Slurm (or found it) as root: the cluster must start
REQUIRED = os.environ.get('FDROP_REQUIRE_SLURM') == '1'
SWEEP = ['--tiny', '--table', '1', '--cells', 'resnet20/baseline', '--seeds', '0']
SLURM = ['--launcher', 'slurm', '--partition', 'debug', '--gpus', '1', '--cpus-per-task', '1',
         '--gres', 'none']
RUN = 'resnet20_1xb128_cifar10/seed0'
EPOCHS = 12
# The interrupted runs hold their training after epoch 1's checkpoint until the test has acted on
# it: on a quiet machine the 12 tiny epochs take 3 s, over before a test that polls for
# epoch_1.pth could act (and max_keep_ckpts=1 deletes that file at epoch 2).
HOLD_HOOK = '''
import time
from pathlib import Path

from mmengine.hooks import Hook


class HoldAfterFirstEpoch(Hook):
    """After epoch 1's checkpoint (a resumed run goes straight on): touch ``held``, then wait
    for the time-limit warning's stop file; a cancelled job is killed while it waits."""
    priority = 'LOWEST'  # after the CheckpointHook

    def after_train_epoch(self, runner):
        if runner.epoch != 0:
            return
        Path(runner.work_dir, 'held').touch()
        stop_file, deadline = Path(runner.work_dir, 'stop_requested'), time.monotonic() + 1200
        while not stop_file.exists():
            assert time.monotonic() < deadline, 'the test never acted on the held training'
            time.sleep(0.2)
'''
LONG_SWEEP = [*SWEEP, *SLURM, '--cfg-options', f'train_cfg.max_epochs={EPOCHS}',
              # a dotted type is imported by mmengine's registry (a cfg-option's custom_imports is not)
              'default_hooks.hold.type=hold_after_first_epoch.HoldAfterFirstEpoch']


@pytest.fixture(scope='module')
def slurm(tmp_path_factory):
    missing = missing_programs()
    if missing and REQUIRED:
        pytest.fail(f'FDROP_REQUIRE_SLURM=1 but Slurm is not installed (no {", ".join(missing)})')
    if missing:
        pytest.skip(f'Slurm is not installed (no {", ".join(missing)}): tools/run_tests.sh installs '
                    'slurmctld slurmd slurm-client munge with apt-get where it can')
    if os.geteuid() != 0:
        pytest.skip('a local Slurm cluster needs root (SlurmUser=root, munged --force)')
    cluster = LocalSlurm(tmp_path_factory.mktemp('slurm'))
    try:
        cluster.start()
    except (RuntimeError, subprocess.SubprocessError, OSError) as error:
        cluster.stop()
        if REQUIRED:
            pytest.fail(f'a local Slurm cluster did not start: {error}\n{cluster.logs()}')
        pytest.skip(f'a local Slurm cluster did not start: {error} (FDROP_REQUIRE_SLURM=1, as '
                    'tools/run_tests.sh sets where Slurm is installed, makes this a failure)')
    yield cluster
    cluster.stop()
    assert not cluster.running(), f'left running: {cluster.running()}'


def tool(cluster, name, *args, timeout=DEADLINE_S):
    """``tools/<name>`` run as a user runs it, against ``cluster`` (None: no cluster); stdout."""
    proc = subprocess.run([sys.executable, str(REPO / 'tools' / name), *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env=cluster.env if cluster else None)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


def wait_until_no_jobs(cluster, deadline_s):
    """Until the queue is empty (the job graph ran or was cancelled), within ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    while cluster.command(['squeue', '-h', '-o', '%i'], timeout=10).strip():
        assert time.monotonic() < deadline, cluster.command(['squeue', '-o', '%i %j %T %r %E'])
        time.sleep(1)


def job_fields(cluster, job_id):
    text = cluster.command(['scontrol', 'show', 'job', '--oneliner', str(job_id)])
    return dict(field.split('=', 1) for field in text.split() if '=' in field)


def submitted_jobs(stdout):
    """stage -> (job id, the job ids it waits for) from the driver's lines."""
    jobs = {}
    for line in stdout.splitlines():
        if ': submitted job ' in line:
            stage, rest = line.split('] ', 1)[1].split(': submitted job ')
            job_id, _, after = rest.split(' (log')[0].partition(' after ')
            jobs[stage] = (job_id, after.split(',') if after else [])
    return jobs


@pytest.fixture
def held_slurm(slurm, tmp_path, monkeypatch):
    """``slurm`` whose jobs can import the HOLD_HOOK module that LONG_SWEEP's runs name."""
    (tmp_path / 'hold_after_first_epoch.py').write_text(HOLD_HOOK)
    monkeypatch.setenv('PYTHONPATH', str(tmp_path))  # slurm.env is this process's environment
    return slurm


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    """A data root the sweeps share (the first generates the tiny data)."""
    return tmp_path_factory.mktemp('tiny_data')


def wait_until_held(cluster, job_id, run_dir):
    """Until HOLD_HOOK holds the job's training after epoch 1; a job that ended first fails, with its log."""
    deadline = time.monotonic() + DEADLINE_S
    while not (run_dir / 'held').exists():
        state = job_fields(cluster, job_id)['JobState']
        assert state in {'PENDING', 'CONFIGURING', 'RUNNING'}, \
            f'job {job_id} {state} before its training was held:\n' + \
            (run_dir / f'slurm-{job_id}.out').read_text()[-3000:]
        assert time.monotonic() < deadline, f'job {job_id} not held after {DEADLINE_S} s'
        time.sleep(0.2)


def wait_for_state(cluster, job_id, deadline_s, **expected):
    """Until ``scontrol show job`` has the ``expected`` fields; the job's fields."""
    deadline = time.monotonic() + deadline_s
    while True:
        fields = job_fields(cluster, job_id)
        if all(fields.get(key) == value for key, value in expected.items()):
            return fields
        assert time.monotonic() < deadline, f'job {job_id}: {fields} after {deadline_s} s, not {expected}'
        time.sleep(0.5)


def mmengine_logs(work_dir):
    """The training runs' own logs in ``work_dir``, oldest first."""
    return '\n'.join(log.read_text() for log in sorted(work_dir.glob('2*/2*.log')))


def test_dry_run_prints_the_job_graph(tmp_path):
    out = tool(None, 'run_pipeline.py', '--work-dir', tmp_path / 'work', '--seeds', '0', '1',
               '--launcher', 'slurm', '--partition', 'gpu', '--gpus', '16', '--time', '3-00:00:00',
               '--sbatch-args=--qos=high', '--srun-args=--mpi=none', '--dry-run')
    scripts = out.split('# --- stage ')[1:]
    assert [s.split(':')[0] for s in scripts] == [
        f'seed{k}/{stage}' for k in (0, 1) for stage in
        ('pretrain_baseline', 'pretrain_fd', 'detection_baseline', 'detection_fd')] + ['results']
    detection = scripts[3]
    assert '--qos=high --dependency=afterok:<seed0/pretrain_fd>' in detection.splitlines()[0]
    for line in ('--nodes=2', '--ntasks=16', '--ntasks-per-node=8', '--gres=gpu:8', '--time=3-00:00:00',
                 f'--output={tmp_path}/work/seed0/detection_fd/slurm-%j.out', '--kill-on-invalid-dep=yes',
                 '--open-mode=append', '--requeue', '--signal=B:USR1@300'):
        assert f'#SBATCH {line}\n' in detection
    assert 'trap on_warning USR1' in detection and 'scontrol requeue "$SLURM_JOB_ID"' in detection
    assert 'tools/run_pipeline.py --work-dir' in detection and '--stage seed0/detection_fd' in detection
    assert '--srun-args=--mpi=none' in detection
    assert scripts[-1].count('<seed') == 8 and '#SBATCH --ntasks=1\n' in scripts[-1]
    assert '--signal' not in scripts[-1], 'the results job trains nothing'
    assert not (tmp_path / 'work').exists(), 'a dry run writes nothing'


@pytest.mark.slow
def test_slurm_train_two_tasks_agree_on_focused_steps(slurm, image_folder, tmp_path):
    (tmp_path / 'dump_per_rank.py').write_text(DUMP_HOOK)
    cfg = classifier_cfg(image_folder, tmp_path / 'work', max_iters=10, custom_hooks=[
        dict(type='FocusedDropoutHook', participation=0.5, targets=['backbone.layer3']),
        dict(type='DumpPerRank')])
    cfg['custom_imports'] = dict(imports=['fdrop_mm', 'dump_per_rank'], allow_failed_imports=False)
    cfg['randomness'] = dict(seed=0, diff_rank_seed=True)  # ranks differ in data order and γ
    Config(cfg).dump(str(tmp_path / 'cfg.py'))
    env = {**slurm.env, 'PYTHON': sys.executable, 'PYTHONPATH': str(tmp_path), 'GPUS': '2',
           'GPUS_PER_NODE': '2', 'CPUS_PER_TASK': '1', 'GRES': '', 'MASTER_PORT': str(free_ports(1)[0])}
    proc = subprocess.run(['bash', str(REPO / 'tools/slurm_train.sh'), 'debug', 'fd-two-tasks',
                           str(tmp_path / 'cfg.py'), str(tmp_path / 'work')], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=DEADLINE_S)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / 'work' / f'rank{rank}.pt') for rank in (0, 1)]
    assert ranks[0]['active'] == ranks[1]['active'] and 0 < sum(ranks[0]['active']) < 10
    for name, value in ranks[0]['params'].items():
        assert torch.equal(value, ranks[1]['params'][name]), name
    assert 'Distributed launcher: slurm' in proc.stdout and 'Distributed training: True' in proc.stdout


@pytest.mark.slow
def test_sweep_job_graph_gives_the_local_table(slurm, tmp_path):
    common = [*SWEEP, '--data-root', tmp_path / 'data']
    cluster_dir, local_dir, run = tmp_path / 'cluster', tmp_path / 'local', 'resnet20_1xb128_cifar10/seed0'
    out = tool(slurm, 'run_sweep.py', *common, '--work-dir', cluster_dir, *SLURM)  # generates the data
    jobs = submitted_jobs(out)
    assert jobs == {run: (jobs[run][0], []), 'tables': (jobs['tables'][0], [jobs[run][0]])}, out
    assert job_fields(slurm, jobs['tables'][0])['Dependency'].startswith(f'afterok:{jobs[run][0]}')
    local = subprocess.Popen([sys.executable, str(REPO / 'tools/run_sweep.py'), *map(str, common),
                              '--work-dir', str(local_dir)], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        again = tool(slurm, 'run_sweep.py', *common, '--work-dir', cluster_dir, *SLURM)
        assert not submitted_jobs(again) and again.count('not resubmitted (log') == 2, again
        wait_until_no_jobs(slurm, DEADLINE_S)
        local_out, _ = local.communicate(timeout=DEADLINE_S)
    finally:
        local.kill()
    assert local.returncode == 0, local_out[-4000:]
    for job_id, _ in jobs.values():
        assert job_fields(slurm, job_id)['JobState'] == 'COMPLETED', f'job {job_id}\n{slurm.logs()}'
    run_log = (cluster_dir / run / f'slurm-{jobs[run][0]}.out').read_text()
    assert 'tools/slurm_train.sh debug seed0' in run_log and 'complete' in run_log
    for name in ('table1.md', 'table1.csv'):
        assert (cluster_dir / name).read_text() == (local_dir / name).read_text()
    assert '| Baseline | ' in (cluster_dir / 'table1.md').read_text()
    done = tool(slurm, 'run_sweep.py', *common, '--work-dir', cluster_dir, *SLURM)
    assert f'{run}: complete, skipped' in done and 'every stage is complete' in done
    assert (cluster_dir / 'table1.md').read_text() in done


@pytest.mark.slow
def test_failed_stage_stops_its_dependants_and_the_rerun_names_it(slurm, tmp_path):
    work = tmp_path / 'work'
    # the full-scale configs on an empty data root: the pretraining fails once it reads its data
    args = ['--work-dir', work, '--data-root', tmp_path / 'empty', '--arms', 'baseline',
            '--no-random-init-floor', *SLURM]
    jobs = submitted_jobs(tool(slurm, 'run_pipeline.py', *args))
    pretrain, detection, results = (jobs[name][0] for name in (
        'seed0/pretrain_baseline', 'seed0/detection_baseline', 'results'))
    assert jobs['seed0/detection_baseline'][1] == [pretrain]  # the chain pretrain -> detection -> table
    assert jobs['results'][1] == [pretrain, detection]
    wait_until_no_jobs(slurm, DEADLINE_S)
    assert job_fields(slurm, pretrain)['JobState'] == 'FAILED'
    for job_id in (detection, results):
        fields = job_fields(slurm, job_id)
        assert (fields['JobState'], fields['Reason']) == ('CANCELLED', 'DependencyNeverSatisfied')
    assert not (work / 'seed0' / 'detection_baseline' / 'train.out').exists(), 'a dependant ran'
    log = work / 'seed0' / 'pretrain_baseline' / f'slurm-{pretrain}.out'
    assert 'stage failed (exit 1)' in log.read_text()
    rerun = tool(slurm, 'run_pipeline.py', *args)
    assert (f'FAILED: stage seed0/pretrain_baseline did not complete in job {pretrain} (FAILED, exit '
            f'code 1:0); its log: {log}') in rerun, rerun
    assert f'seed0/detection_baseline: job {detection} never ran' in rerun
    assert '1 stage(s) resubmitted whose job ended without completing them' in rerun
    assert ': seed0/pretrain_baseline (FAILED)' in rerun
    slurm.command(['scancel', *(job_id for job_id, _ in submitted_jobs(rerun).values())])


@pytest.mark.slow
def test_cancelled_training_job_is_reported_and_resumes_when_resubmitted(held_slurm, tiny_data, tmp_path):
    slurm = held_slurm
    work = tmp_path / 'work'
    args = ['--data-root', tiny_data, '--work-dir', work, *LONG_SWEEP]
    jobs = submitted_jobs(tool(slurm, 'run_sweep.py', *args))
    job, run_dir = jobs[RUN][0], work / RUN
    wait_until_held(slurm, job, run_dir)  # epoch_1.pth saved
    slurm.command(['scancel', job])
    wait_until_no_jobs(slurm, DEADLINE_S)  # the tables job too: its dependency can never be met
    cancelled = job_fields(slurm, job)
    assert cancelled['JobState'] == 'CANCELLED' and not (run_dir / 'done.json').exists()
    pointer = (run_dir / 'last_checkpoint').read_text()
    kept = int(re.fullmatch(re.escape(f'{run_dir}/epoch_') + r'(\d+)\.pth', pointer)[1])
    assert 1 <= kept < EPOCHS
    tables_record = work / 'tables' / 'submitted.json'
    tables_record.write_text(tables_record.read_text()[:20])  # a record cut short
    rerun = tool(slurm, 'run_sweep.py', *args)
    print(rerun)  # shown with pytest -rP
    log = run_dir / f'slurm-{job}.out'
    assert (f'INTERRUPTED: stage {RUN} did not complete in job {job} (CANCELLED, exit code '
            f'{cancelled["ExitCode"]}); its log: {log}') in rerun, rerun
    assert f'tables: {tables_record} is unreadable or corrupt (JSONDecodeError: ' in rerun
    assert '1 stage(s) resubmitted whose job ended without completing them' in rerun
    again = submitted_jobs(rerun)
    assert set(again) == {RUN, 'tables'} and again['tables'][1] == [again[RUN][0]], rerun
    wait_until_no_jobs(slurm, DEADLINE_S)
    for job_id, _ in again.values():
        assert job_fields(slurm, job_id)['JobState'] == 'COMPLETED', f'job {job_id}\n{slurm.logs()}'
    resumed_log = (run_dir / f'slurm-{again[RUN][0]}.out').read_text()
    print(resumed_log)
    assert f'resumed from epoch {kept} ({run_dir}/epoch_{kept}.pth)' in resumed_log, resumed_log[-3000:]
    assert (run_dir / f'epoch_{EPOCHS}.pth').is_file() and (work / 'table1.md').is_file()


@pytest.mark.slow
def test_time_limit_warning_stops_the_training_and_the_job_requeues_itself(held_slurm, tiny_data, tmp_path):
    slurm = held_slurm
    work = tmp_path / 'work'
    args = ['--data-root', tiny_data, '--work-dir', work, '--time', '30', '--stop-before', '120', *LONG_SWEEP]
    jobs = submitted_jobs(tool(slurm, 'run_sweep.py', *args))
    job, run_dir = jobs[RUN][0], work / RUN
    script = (run_dir / 'sbatch.sh').read_text()
    for line in ('--requeue', '--signal=B:USR1@120', '--open-mode=append', '--time=30'):
        assert f'#SBATCH {line}\n' in script
    fields = job_fields(slurm, job)
    assert (fields['Requeue'], fields['TimeLimit'], fields['Restarts']) == ('1', '00:30:00', '0')
    wait_until_held(slurm, job, run_dir)  # epoch_1.pth saved
    # what Slurm sends 120 s before the limit: USR1 to the batch shell only
    slurm.command(['scancel', '--signal=USR1', '--batch', job])
    wait_for_state(slurm, job, DEADLINE_S, JobState='PENDING', Restarts='1')
    # Slurm starts it again itself, CRED_EXPIRE_S after the requeue: an earlier start forced with
    # `scontrol update StartTime=now` can fail the job ("Job credential revoked" in slurmctld.log)
    wait_until_no_jobs(slurm, DEADLINE_S)
    for job_id, _ in jobs.values():
        assert job_fields(slurm, job_id)['JobState'] == 'COMPLETED', f'job {job_id}\n{slurm.logs()}'
    assert job_fields(slurm, job)['Restarts'] == '1'
    log = (run_dir / f'slurm-{job}.out').read_text()  # both starts (appended)
    print(log)
    training_logs = mmengine_logs(run_dir)
    print(training_logs)
    stopped = re.search(r'stopped on request \((.+?)\) after iteration \d+ \(epoch (\d+), batch 1\); '
                        r'no mid-epoch checkpoint .* a resumed run starts from (\S+)\n', training_logs)
    assert stopped, training_logs[-3000:]
    epoch = int(stopped[2])
    assert stopped[1] == str(run_dir / 'stop_requested')
    assert stopped[3] == str(run_dir / f'epoch_{epoch - 1}.pth')
    assert 'SIGUSR1 (the time limit is near): asking the training to stop' in log
    assert f'after its training saved {run_dir}/epoch_{epoch - 1}.pth: requeued' in log
    assert f'resumed from epoch {epoch - 1} ({run_dir}/epoch_{epoch - 1}.pth)' in log, log[-3000:]
    assert (run_dir / f'epoch_{EPOCHS}.pth').is_file() and not (run_dir / 'stop_requested').exists()
