"""fdrop_mm.experiments.launcher: the commands each launcher builds, and bad settings."""
import sys

import pytest

from fdrop_mm.experiments.launcher import REPO, TOOLS, Launcher


def test_commands_go_through_the_repository_tools(tmp_path):
    work_dir = tmp_path / 'run'
    options = ['randomness.seed=0']
    local, dist, slurm = Launcher(), Launcher('pytorch', 2), Launcher('slurm', 16, 'gpu')
    assert local.train_command('a.py', work_dir, options) == [
        sys.executable, str(TOOLS / 'train.py'), 'a.py', '--work-dir', str(work_dir),
        '--cfg-options', 'randomness.seed=0']
    assert dist.train_command('a.py', work_dir) == [
        'bash', str(TOOLS / 'dist_train.sh'), 'a.py', '2', '--work-dir', str(work_dir)]
    assert slurm.train_command('a.py', work_dir, options) == [
        'bash', str(TOOLS / 'slurm_train.sh'), 'gpu', 'run', 'a.py', str(work_dir),
        '--cfg-options', 'randomness.seed=0']
    checkpoint = work_dir / 'epoch_2.pth'  # resuming: tools/train.py --resume, through every launcher
    assert local.train_command('a.py', work_dir, options, resume=checkpoint)[3:] == [
        '--work-dir', str(work_dir), '--resume', str(checkpoint), '--cfg-options', 'randomness.seed=0']
    assert dist.train_command('a.py', work_dir, resume=checkpoint)[4:] == [
        '--work-dir', str(work_dir), '--resume', str(checkpoint)]
    assert slurm.train_command('a.py', work_dir, resume=checkpoint)[6:] == ['--resume', str(checkpoint)]
    assert slurm.environment()['GPUS'] == '16' and local.environment()['PYTHON'] == sys.executable
    test = ['--work-dir', str(work_dir / 'test'), '--metrics-out', str(work_dir / 'm.json')]
    assert dist.test_command('a.py', 'c.pth', work_dir / 'test', work_dir / 'm.json') == [
        'bash', str(TOOLS / 'dist_test.sh'), 'a.py', 'c.pth', '2', *test]
    for launcher in (local, slurm):  # slurm tests in one local process
        assert launcher.test_command('a.py', 'c.pth', work_dir / 'test', work_dir / 'm.json') == [
            sys.executable, str(TOOLS / 'test.py'), 'a.py', 'c.pth', *test]
    assert TOOLS == REPO / 'tools' and (TOOLS / 'train.py').is_file()


def test_experiment_environment_and_tag():
    launcher = Launcher(env=dict(A='1')).for_experiment('sweep', B='2')
    assert launcher.tag == 'sweep' and launcher.environment()['A'] == '1'
    assert launcher.environment()['B'] == '2'


@pytest.mark.parametrize('settings, message', [
    (dict(kind='slurm'), '--launcher slurm needs --partition'),
    (dict(gpus=2), '--gpus > 1 needs --launcher pytorch or slurm'),
    (dict(kind='pytorch', gpus=0), '--gpus 0: needs at least 1'),
    (dict(kind='mpi'), "--launcher 'mpi': expected one of none, pytorch, slurm"),
])
def test_bad_settings_are_errors_naming_the_option(settings, message):
    with pytest.raises(ValueError, match=message):
        Launcher(**settings)


def test_failed_run_shows_the_log(tmp_path):
    with pytest.raises(RuntimeError, match=r'stage failed \(exit 3\).*\nboom'):
        Launcher().run([sys.executable, '-c', 'print("boom"); raise SystemExit(3)'], tmp_path / 'out.log')
    killed = 'import os, signal; print("epoch 2", flush=True); os.kill(os.getpid(), signal.SIGKILL)'
    with pytest.raises(RuntimeError, match=r'stage failed \(killed by SIGKILL\): see .*out.log\nboom\nepoch 2'):
        Launcher().run([sys.executable, '-c', killed], tmp_path / 'out.log', append=True)
