"""fdrop_mm.experiments.stages: the hash of what a run trains, from mmengine's resolved config;
a stage's records, its attempts (started.json), steps and the checkpoint it resumes from."""
import json
import logging
import os
import re
from unittest import mock

import pytest
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner import Runner

from fdrop_mm.experiments import disk
from fdrop_mm.experiments.stages import (completed, config_sha256, parse_cfg_options, resume_checkpoint,
                                         run_stage, step)
from tests.conftest import REPO, classifier_cfg


def test_config_hash_follows_inheritance_options_and_environment(tmp_path):
    base, child = tmp_path / 'base.py', tmp_path / 'child.py'
    base.write_text("data_root = '{{$TINY_ROOT:data/x}}'\nmodel = dict(depth=20)\n")
    child.write_text("_base_ = './base.py'\nmodel = dict(width=8)\n")
    digest = config_sha256(child)
    assert config_sha256(child) == digest
    assert config_sha256(child, ['model.depth=56']) != digest
    assert config_sha256(child, ['model.depth=20']) == digest  # what is trained, not how it is said
    assert config_sha256(child, env=dict(TINY_ROOT='elsewhere')) != digest
    base.write_text("data_root = '{{$TINY_ROOT:data/x}}'\nmodel = dict(depth=110)\n")
    assert config_sha256(child) != digest, 'an inherited file changed'


def test_options_are_read_as_train_py_reads_them():
    assert parse_cfg_options(['a.b=None', 'c=[1]', 'd=0.5', 'e=False']) == dict(
        {'a.b': None, 'c': [1], 'd': 0.5, 'e': False})
    assert parse_cfg_options([]) == {}


def test_hashing_a_config_logs_no_env_variable_lines(tmp_path):
    """The driver hashes each stage's config several times; mmengine's "Using env variable"
    line belongs in the stage's own log, not once per hash in the driver's output."""
    config = tmp_path / 'config.py'
    config.write_text("data_root = '{{$TINY_ROOT:data/x}}'\n")
    logger = MMLogger.get_current_instance()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        config_sha256(config, env=dict(TINY_ROOT='elsewhere'))
        assert not [r.getMessage() for r in records]
        with mock.patch.dict(os.environ, dict(TINY_ROOT='elsewhere')):
            Config.fromfile(config)  # mmengine logs the substitution: quieted only while hashing
        assert any('Using env variable `TINY_ROOT`' in r.getMessage() for r in records)
    finally:
        logger.removeHandler(handler)


# ------------------------------------------------------------------ attempts, steps, resume
def produce_files(*names):
    """A stage's ``produce`` that writes ``names`` into its work folder and names them in ``files``."""
    def produce(work_dir):
        for name in names:
            (work_dir / name).write_text(name)
        return dict(files=[str(work_dir / name) for name in names])
    return produce


def test_truncated_done_json_is_named_and_the_stage_not_complete(tmp_path, capsys):
    work_dir = tmp_path / 'stage'
    run_stage(work_dir, produce_files('out.txt'), dict(seed=0))
    done = work_dir / 'done.json'
    record = json.loads(done.read_text())
    done.write_text(done.read_text()[:20])  # an in-place write killed half-way: '{\n  "files": [\n    "/tm'
    assert completed(work_dir, dict(seed=0)) == (
        None, f'{done} is unreadable or corrupt (JSONDecodeError: Unterminated string starting at: '
              'line 3 column 5 (char 19))')
    capsys.readouterr()
    again = run_stage(work_dir, produce_files('out.txt'), dict(seed=0))
    assert f'[pipeline] rerun {work_dir}: {done} is unreadable or corrupt (JSONDecodeError: ' in capsys.readouterr().out
    assert {**again, 'wall_s': 0} == {**record, 'wall_s': 0} == {**json.loads(done.read_text()), 'wall_s': 0}
    done.write_text('[1, 2]')
    assert completed(work_dir, dict(seed=0)) == (None, f'{done} is corrupt: expected a JSON object, found list')


def test_changed_inputs_move_the_earlier_attempt_aside(tmp_path, capsys):
    work_dir = tmp_path / 'stage'
    run_stage(work_dir, produce_files('epoch_1.pth', 'train.out'), dict(seed=0, config='a'))
    job_files = ['sbatch.sh', 'slurm-7.out', 'submitted.json']  # a Slurm job's, written while it runs
    for name in job_files:
        (work_dir / name).write_text(name)
    capsys.readouterr()
    run_stage(work_dir, produce_files('epoch_1.pth'), dict(seed=1, config='a'))
    out = capsys.readouterr().out
    stale = [path for path in work_dir.iterdir() if path.name.startswith('stale-')]
    assert len(stale) == 1 and re.fullmatch(r'stale-\d{8}T\d{6}Z', stale[0].name)
    assert (f'[pipeline] {work_dir}: starting afresh, not resuming: its inputs changed (seed) since '
            f'{work_dir / "started.json"} was written; the earlier attempt\'s 4 file(s) (checkpoints: '
            f'epoch_1.pth) moved to {stale[0]}') in out
    assert sorted(p.name for p in stale[0].iterdir()) == ['done.json', 'epoch_1.pth', 'started.json', 'train.out']
    assert json.loads((stale[0] / 'started.json').read_text())['inputs'] == dict(seed=0, config='a')
    assert sorted(p.name for p in work_dir.iterdir()) == sorted(
        ['done.json', 'epoch_1.pth', 'started.json', stale[0].name, *job_files])
    (work_dir / 'started.json').unlink()
    (work_dir / 'done.json').unlink()
    run_stage(work_dir, produce_files('epoch_1.pth'), dict(seed=1, config='a'))
    assert f'starting afresh, not resuming: no {work_dir / "started.json"} records the inputs' in capsys.readouterr().out


def test_steps_finished_before_an_interruption_are_not_redone(tmp_path, capsys):
    work_dir = tmp_path / 'stage'
    ran = []

    def produce(fail_at=None):
        def steps(work_dir):
            for name in ('train', 'test', 'extract'):
                def run(name=name):
                    if name == fail_at:
                        raise KeyboardInterrupt  # the run stops here
                    ran.append(name)
                    (work_dir / f'{name}.out').write_text(name)
                    return dict(files=[str(work_dir / f'{name}.out')], value=len(ran))
                step(work_dir, name, run, 'pipeline')
            return {}
        return steps

    with pytest.raises(KeyboardInterrupt):
        run_stage(work_dir, produce(fail_at='extract'), dict(seed=0))
    assert ran == ['train', 'test']
    (work_dir / 'test.out').unlink()
    capsys.readouterr()
    run_stage(work_dir, produce(), dict(seed=0))
    out = capsys.readouterr().out
    assert ran == ['train', 'test', 'test', 'extract']
    assert f'{work_dir}: train: done in an earlier attempt ({work_dir / "started.json"})' in out
    assert f'{work_dir}: test again: {work_dir / "test.out"}, which it made, is gone' in out
    steps = json.loads((work_dir / 'started.json').read_text())['steps']
    assert {name: steps[name]['result']['value'] for name in steps} == dict(train=1, test=3, extract=4)


def test_resume_checkpoint_is_the_furthest_that_loads(image_folder, tmp_path, capsys):
    work_dir = tmp_path / 'run'
    cfg = classifier_cfg(image_folder, work_dir, max_iters=4, default_hooks=dict(
        checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False, max_keep_ckpts=2)))
    Runner.from_cfg(Config(cfg)).train()
    (work_dir / 'backbone.pth').write_bytes((work_dir / 'iter_4.pth').read_bytes())  # not a training's name
    assert resume_checkpoint(work_dir, 'sweep') == work_dir / 'iter_4.pth'
    assert f'[sweep] {work_dir}: resumed from iteration 4 ({work_dir / "iter_4.pth"})' in capsys.readouterr().out
    damaged = (work_dir / 'iter_4.pth').read_bytes()
    (work_dir / 'iter_4.pth').write_bytes(damaged[:len(damaged) // 2])  # killed while it was written
    assert resume_checkpoint(work_dir, 'sweep') == work_dir / 'iter_2.pth'
    out = capsys.readouterr().out
    assert f'[sweep] {work_dir}: not resuming from {work_dir / "iter_4.pth"}: it does not load (' in out
    assert f'resumed from iteration 2 ({work_dir / "iter_2.pth"})' in out
    for name in ('iter_2.pth', 'iter_4.pth'):
        (work_dir / name).unlink()
    assert resume_checkpoint(work_dir, 'sweep') is None and capsys.readouterr().out == ''


# --------------------------------------------------------------------------------- disk
@pytest.mark.slow
def test_disk_section_of_the_docs_is_what_the_configs_take():
    """docs/checkpoints.md's disk figures are the full-scale models' and optimizers' bytes, as
    fdrop_mm.experiments.disk computes them from the configs now; ResNet-50's come out as its
    25,557,032 parameters (the published count) in float32, once as weights (with a few BN
    buffers) and once as SGD's momentum (nothing is frozen in pretraining)."""
    pipeline, sweep = disk.pipeline_disk(), disk.sweep_disk()
    text = (REPO / 'docs/checkpoints.md').read_text()
    assert disk.disk_section(pipeline, sweep) in text
    pretrain = next(entry for entry in pipeline if entry.stage == 'seed0/pretrain_baseline')
    parameters = 25_557_032 * 4
    assert parameters < pretrain.weights < 1.02 * parameters
    assert parameters < pretrain.optimizer < 1.01 * parameters
    assert pretrain.checkpoints == 2 and pretrain.total == 2 * (pretrain.weights + pretrain.optimizer) + pretrain.extra
    detection = next(entry for entry in pipeline if entry.stage == 'seed0/detection_baseline')
    assert detection.optimizer < detection.weights, 'the frozen stem and layer1 have no momentum'
    assert len(sweep) == 13 and all(entry.extra == entry.weights for entry in sweep)  # and the best
