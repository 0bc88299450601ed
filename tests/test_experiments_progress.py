"""fdrop_mm.experiments.progress: the live progress of an experiment's stages, read from the
logs of real mmpretrain trainings (mmengine Runners) while they run, and the stage-time table."""
import io
import json
import re
import time

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from fdrop_mm.experiments.progress import (SKIPPED, JobProgress, LogFollower, StageTime, format_duration,
                                           parse_log_line, stage_logs)
from fdrop_mm.experiments.stages import FINAL, Stage, StageGraph
from tests.conftest import classifier_cfg

EPOCHS = 3


class Trainings(StageGraph):
    """Two seeds of a narrow ResNet-18 trained by mmengine's Runner for ``EPOCHS`` epochs (each
    validated), logging every iteration; then a final stage."""
    tag = 'test'

    def __init__(self, root, images):
        self.root, self.images = root, images

    def build_stages(self):
        runs = [Stage(f'seed{seed}/train_resnet18', f'train ResNet-18, seed {seed}',
                      self.root / f'seed{seed}' / 'train_resnet18', 'train', arm='resnet18', seed=seed)
                for seed in (0, 1)]
        return [*runs, Stage('summary', 'collect', self.root, FINAL, tuple(s.name for s in runs))]

    def read_inputs(self, stage):
        return dict(seed=stage.seed)

    def produce(self, stage, upstream, work_dir):
        if stage.final:
            return dict(table='collected')
        loader = dict(batch_size=4, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
                      dataset=dict(type='CustomDataset', data_root=str(self.images),
                                   pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')]))
        cfg = classifier_cfg(self.images, work_dir, randomness=dict(seed=stage.seed),
                             train_cfg=dict(by_epoch=True, max_epochs=EPOCHS, val_interval=1),
                             val_dataloader=loader, val_cfg=dict(), val_evaluator=dict(type='Accuracy'),
                             default_hooks=dict(logger=dict(type='LoggerHook', interval=1),
                                                checkpoint=dict(type='CheckpointHook', interval=EPOCHS)))
        Runner.from_cfg(Config(cfg)).train()
        return dict(files=[str(work_dir / f'epoch_{EPOCHS}.pth')])


@pytest.fixture(scope='module')
def trained(tmp_path_factory, image_folder):
    graph = Trainings(tmp_path_factory.mktemp('progress'), image_folder)
    out = io.StringIO()
    record = JobProgress(graph, out=out, tty=False, interval=0, poll_s=0.05).run()
    return graph, out.getvalue(), record


def test_log_parsing_agrees_with_mmengines_own_scalars(trained):
    graph, _, _ = trained
    work_dir = graph.stages()[0].work_dir
    log, = stage_logs(work_dir)
    parsed = [p for p in (parse_log_line(line, log, EPOCHS) for line in log.read_text().splitlines()) if p]
    train = [p for p in parsed if p.phase == 'train']
    scalars = [json.loads(line) for line in (log.parent / 'vis_data' / 'scalars.json').read_text().splitlines()]
    logged = [s for s in scalars if 'loss' in s]
    assert len(train) == len(logged) == EPOCHS * 4  # 16 images, batch 4, every iteration logged
    for progress, scalar in zip(train, logged):
        assert progress.epoch == scalar['epoch'] and progress.max_epochs == EPOCHS
        assert (progress.epoch - 1) * progress.iterations + progress.iteration == scalar['iter']
        assert progress.loss == pytest.approx(scalar['loss'], abs=5e-5)  # the text log has 4 decimals
        assert progress.eta_s is not None and progress.eta_s >= 0
    assert train[-1].fraction == 1 and train[0].fraction == pytest.approx(1 / (EPOCHS * 4))
    assert train[-1].eta_s == 0
    assert {p.epoch for p in parsed if p.phase == 'val'} == set(range(1, EPOCHS + 1))
    follower = LogFollower(work_dir, since=0)
    last = follower.poll()
    assert (last.phase, last.epoch) == ('val', EPOCHS) and follower.last_train == train[-1]
    assert follower.last_train.describe() == (f'training epoch {EPOCHS}/{EPOCHS}, iter 4/4, '
                                              f'loss {train[-1].loss:.4f}, ETA 0:00:00')


def test_driver_shows_stage_progress_job_eta_and_a_stage_time_table(trained):
    graph, out, record = trained
    assert record == dict(table='collected')
    lines = out.splitlines()
    assert '[test] stage 1/3 seed0/train_resnet18 (arm resnet18, seed 0): start: train ResNet-18, seed 0' in lines
    live = [line for line in lines if line.startswith('[test] stage 1/3') and 'training epoch' in line]
    assert live, 'no progress line while the first stage trained:\n' + out
    # the second seed, not yet timed, is estimated from the first's own estimate
    assert re.search(r'training epoch [1-3]/3, iter [1-4]/4, loss \d+\.\d{4}, ETA \d:\d\d:\d\d; '
                     r'elapsed \d:\d\d:\d\d; job ETA about \d:\d\d:\d\d$', live[0])
    # once the first seed is timed, the second's job ETA needs no guess
    second = [line for line in lines if line.startswith('[test] stage 2/3') and 'job ETA' in line]
    assert second and all('not yet timed' not in line for line in second)
    table = out[out.index('## Stage wall times (test)'):]
    assert re.search(r'\| 1 \| seed0/train_resnet18 \| resnet18 \| 0 \| train ResNet-18, seed 0 \| ran \| '
                     r'\d:\d\d:\d\d \|', table)
    assert '| 3 | summary | – | – | collect | ran |' in table
    assert (graph.root / 'stage_times.md').read_text() == table.rstrip('\n') + '\n'


def test_rerun_lists_skipped_stages_with_the_time_they_took(trained):
    graph, _, _ = trained
    out = io.StringIO()
    JobProgress(graph, out=out, tty=False).run()
    took = json.loads((graph.stages()[0].work_dir / 'done.json').read_text())['wall_s']
    assert (f'| 1 | seed0/train_resnet18 | resnet18 | 0 | train ResNet-18, seed 0 | {SKIPPED} | '
            f'{format_duration(took)} (when it ran) |') in out.getvalue()
    assert 'training epoch' not in out.getvalue()


def test_terminal_display_is_rich(trained):
    graph, _, _ = trained
    out = io.StringIO()
    JobProgress(graph, out=out, tty=True).run()
    text = out.getvalue()
    assert '\x1b[' in text, 'rich writes terminal control sequences'
    assert 'stage 1/3 seed0/train_resnet18' in text and '## Stage wall times (test)' in text


class Planned(StageGraph):
    """Two seeds of a pretraining and two detections: stages that are only planned, never run."""
    tag = 'plan'

    def __init__(self, root):
        self.root = root

    def build_stages(self):
        stages = []
        for seed in (0, 1):
            stages.append(Stage(f'seed{seed}/pretrain', 'pretrain', self.root, 'pretrain', arm='a', seed=seed))
            stages += [Stage(f'seed{seed}/detection_{arm}', 'detect', self.root, 'detect', arm=arm, seed=seed)
                       for arm in ('x', 'y')]
        return [*stages, Stage('results', 'table', self.root, FINAL, tuple(s.name for s in stages))]


def test_job_eta_estimates_stages_not_yet_timed_from_the_running_one(tmp_path):
    graph = Planned(tmp_path)
    progress = JobProgress(graph, out=io.StringIO(), tty=False)
    progress.times.append(StageTime(graph.stage('seed0/pretrain'), 'ran', 600.0))
    progress.current = graph.stage('seed0/detection_x')
    progress.started_at = time.monotonic() - 100  # running for 100 s
    progress.follower = LogFollower(tmp_path, since=time.time())
    # no log yet: the running detection and the three to come have no estimate; seed 1's
    # pretraining takes seed 0's 600 s
    assert progress.job_eta() == '≥ about 0:10:00 (+4 stages not yet timed)'
    line = parse_log_line('Epoch(train) [1][ 5/10]  lr: 1e-02  eta: 0:00:50  time: 0.5  loss: 1.0000',
                          tmp_path / 'run.log')
    progress.follower.last = progress.follower.last_train = line
    # mmengine's 50 s left of a detection that then takes 100 + 50 s: each of the three detections
    # to come is estimated at 150 s; 50 + 600 + 3 * 150 = 1100 s
    assert progress.job_eta() == 'about 0:18:20'
    progress.times.append(StageTime(graph.stage('seed0/detection_y'), 'ran', 200.0))
    # detection y timed (200 s) in seed 0: seed 1's y takes that, seed 1's x the detections' mean
    # (200 s, the only one timed): 50 + 600 + 200 + 200 = 1050 s
    assert progress.job_eta() == 'about 0:17:30'
