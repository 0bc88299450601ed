"""The experiment of paper §5.3 for each arm and seed: ResNet-50 pretraining on ImageNet
(mmpretrain) -> backbone extraction -> RetinaNet-FPN fine-tune on VOC 07+12 (mmdet) -> VOC2007
test, then a comparison table (markdown and JSON).

Each stage is skipped on a rerun while its ``done.json`` matches its inputs (``stages``).
``tiny`` runs the CPU smoke configs (configs/tiny/) on data that
``fdrop_mm.tiny_data`` generates, and adds a detector trained from a random backbone,
the floor a transfer must beat.
"""
import dataclasses
import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from fdrop_mm.tiny_data import DATASET_FOLDERS, generate
from fdrop_mm.transfer import extract_backbone, focused_dropout_note

from .command_line import drive
from .launcher import REPO, TOOLS, Launcher
from .progress import JobProgress
from .published import PublishedCheckpoint, check_classifier_checkpoint
from .results import format_cell, format_estimate, markdown_table, write_table
from .slurm import SlurmOptions
from .stages import FINAL, Stage, StageGraph, read_config, step, train, training_inputs

# arm -> (config at the paper's scale, the CPU smoke config on tiny data)
PRETRAIN_CONFIGS = {
    'baseline': ('configs/pretrain/resnet50_8xb32_in1k.py', 'configs/tiny/resnet50_tiny-imagenet.py'),
    'fd': ('configs/pretrain/resnet50_fd_8xb32_in1k.py', 'configs/tiny/resnet50_fd_tiny-imagenet.py'),
}
DETECTION_CONFIGS = {
    'baseline': ('configs/detection/retinanet_r50_fpn_1x_voc0712_from-baseline.py',
                 'configs/tiny/retinanet_r50_fpn_voc0712_tiny.py'),
    'fd': ('configs/detection/retinanet_r50_fpn_1x_voc0712_from-fd.py',
           'configs/tiny/retinanet_r50_fpn_voc0712_tiny.py'),
    'fd+fd-finetune': ('configs/detection/retinanet_r50_fpn_1x_voc0712_from-fd_fd-finetune.py',
                       'configs/tiny/retinanet_r50_fpn_voc0712_tiny_fd-finetune.py'),
}
ARMS = tuple(DETECTION_CONFIGS)  # fd+fd-finetune: FD while fine-tuning too (offered)
PRETRAIN_OF = {'baseline': 'baseline', 'fd': 'fd', 'fd+fd-finetune': 'fd'}
PRETRAIN = 'pretrain'  # a stage kind: pretrain (or test a published checkpoint), extract the backbone
DETECT = 'detect'  # a stage kind: fine-tune a detector, test it
RANDOM_INIT = 'random-init'  # detector trained from a randomly initialised backbone: the floor
TINY_NOTE = ('Tiny synthetic data: this table shows that the pipeline works (pretrain, transfer, '
             'fine-tune, evaluate), not the paper\'s effect; on a few hundred synthetic images the '
             'difference between arms is noise. Read the mean ± std over seeds, not a ranking.')
PERCENT = 100  # mmdet's VOCMetric gives mAP and each class's AP as fractions; tables show %
UNITS = dict(top1='%', top5='%', mAP='%', class_ap='%')
# What the paper reports at full scale (§5.3 and Table 5): (mean, std or None where not given)
PAPER_REPORTED = {'baseline': dict(top1=(76.32, None), mAP=(70.14, 0.17)),
                  'fd': dict(top1=(76.84, None), mAP=(71.05, 0.13))}
PAPER_NOTE = ("paper's: the numbers the paper reports, not measured here (§5.3: ResNet-50 top-1 on "
              'ImageNet val; Table 5: RetinaNet-FPN mAP on VOC2007 test, mean ± std). It reports no '
              'top-5, no per-class AP and no arm with FocusedDropout while fine-tuning.')


@dataclasses.dataclass
class Pipeline(StageGraph):
    """Pretraining, transfer, fine-tuning and testing of ``arms`` x ``seeds`` under
    ``work_dir/seed<k>/{pretrain,detection}_<arm>``, on the data under ``data_root``
    (``imagenet/`` and ``VOCdevkit/``), as a graph of stages (:meth:`stages`). ``pretrained``
    maps a pretraining arm (baseline, fd) to a published checkpoint (a file or URL) that is tested
    and transferred instead of training that arm (``fdrop_mm.experiments.published``)."""
    work_dir: Path
    data_root: Path
    launcher: Launcher = Launcher()
    tiny: bool = False
    seeds: Sequence[int] = (0, )
    arms: Sequence[str] = ('baseline', 'fd')
    random_init_floor: bool = False
    pretrained: Mapping[str, str] = dataclasses.field(default_factory=dict)
    tag = 'pipeline'
    tool = TOOLS / 'run_pipeline.py'

    def __post_init__(self):
        unknown = [arm for arm in self.arms if arm not in ARMS]
        if unknown:
            raise ValueError(f'arms: unknown {unknown}, expected some of {list(ARMS)}')
        used = sorted({PRETRAIN_OF[arm] for arm in self.arms})
        self.published = {arm: PublishedCheckpoint(arm, str(source))
                          for arm, source in self.pretrained.items()}
        for arm, published in self.published.items():
            if arm not in used:
                raise ValueError(f'{published.label}: no arm of {list(self.arms)} starts from the '
                                 f'{arm} pretraining; the pretrainings they use: {used}')
            if published.is_local:
                published.local_path()  # a missing file fails here, before any stage runs
        self.launcher = self.launcher.for_experiment(
            'pipeline', IMAGENET_ROOT=str(self.data_root / DATASET_FOLDERS['imagenet']),
            VOC_ROOT=str(self.data_root / DATASET_FOLDERS['voc']) + '/')

    def config(self, configs: dict, arm: str) -> str:
        """The arm's config in ``configs``: the CPU smoke one with ``tiny``."""
        full_scale, tiny = configs[arm]
        return tiny if self.tiny else full_scale

    def stage_inputs(self, config: str, options: Sequence[str], upstream: Optional[dict] = None) -> dict:
        """What a training stage reads (:func:`training_inputs`): its config and options, the tiny
        ImageNet's and VOC's manifests, the upstream stage's inputs."""
        return training_inputs(config, options, self.launcher.env,
                               [self.data_root / DATASET_FOLDERS[dataset] for dataset in ('imagenet', 'voc')],
                               upstream)

    def build_stages(self) -> List[Stage]:
        """Per seed: each pretraining the arms need (train, test, extract the backbone), each
        arm's detector (fine-tune from that backbone, test), the random-init floor with
        ``random_init_floor``; then ``results``, the table, needing them all."""
        stages = []
        for seed in self.seeds:
            sources = sorted({PRETRAIN_OF[arm] for arm in self.arms})
            for source in sources:
                name = f'seed{seed}/pretrain_{source}'
                published = self.published.get(source)
                what = (f'test the published checkpoint {published.source} ({source}) on ImageNet '
                        'val, extract its backbone' if published else
                        f'pretrain ResNet-50 ({source}) on ImageNet, test it, extract its backbone')
                stages.append(Stage(name, what, self.work_dir / name, PRETRAIN, arm=source, seed=seed))
            for arm in [*self.arms, *([RANDOM_INIT] if self.random_init_floor else [])]:
                name = f'seed{seed}/detection_{arm}'
                if arm == RANDOM_INIT:
                    needs, backbone = (), 'a random backbone'
                else:
                    needs = (f'seed{seed}/pretrain_{PRETRAIN_OF[arm]}', )
                    backbone = f'the {PRETRAIN_OF[arm]} backbone'
                stages.append(Stage(name, f'fine-tune RetinaNet ({arm}) on VOC 07+12 from {backbone}, '
                                          'test on VOC2007', self.work_dir / name, DETECT, needs, arm, seed=seed))
        stages.append(Stage('results', f'write the results table ({self.work_dir / "results.md"})',
                            self.work_dir, FINAL, tuple(stage.name for stage in stages)))
        return stages

    def training(self, stage: Stage) -> Tuple[str, List[str], Optional[Stage]]:
        """A training stage's config, its ``--cfg-options`` and the pretraining it starts from
        (None: a pretraining, or the random-init floor)."""
        if stage.kind == PRETRAIN:
            return self.config(PRETRAIN_CONFIGS, stage.arm), [f'randomness.seed={stage.seed}'], None
        upstream = self.stage(stage.needs[0]) if stage.needs else None
        init = ('model.backbone.init_cfg=None' if upstream is None
                else f'model.backbone.init_cfg.checkpoint={upstream.work_dir / "backbone.pth"}')
        config = self.config(DETECTION_CONFIGS, 'baseline' if stage.arm == RANDOM_INIT else stage.arm)
        return config, [init, f'randomness.seed={stage.seed}'], upstream

    def read_inputs(self, stage: Stage) -> Optional[dict]:
        if stage.final:
            return None
        config, options, upstream = self.training(stage)
        if stage.kind == PRETRAIN and stage.arm in self.published:
            return dict(self.stage_inputs(config, []), published=self.published[stage.arm].inputs())
        return self.stage_inputs(config, options, upstream and self.inputs(upstream))

    def produce(self, stage: Stage, upstream: Dict[str, dict], work_dir: Path) -> dict:
        if stage.final:
            return dict(table=self.results(upstream))
        config, options, pretrain = self.training(stage)
        if stage.kind == PRETRAIN and stage.arm in self.published:
            return self.test_published(stage, config, work_dir)
        checkpoint = train(self.launcher, config, work_dir, options)
        tag = self.launcher.tag
        if stage.kind == PRETRAIN:
            metrics = step(work_dir, 'test', lambda: self.launcher.test(config, checkpoint, work_dir), tag)
            backbone = work_dir / 'backbone.pth'

            def extract():
                written = extract_backbone(checkpoint, backbone,
                                           meta=dict(arm=stage.arm, seed=stage.seed, config=config))
                return dict(files=[str(backbone)], history=written['meta']['focused_dropout_history'])
            history = step(work_dir, 'extract_backbone', extract, tag)['history']
            return dict(config=config, checkpoint=str(checkpoint), backbone=str(backbone),
                        metrics=metrics, files=[str(checkpoint), str(backbone)],
                        focused_dropout_history=history)
        backbone = upstream[pretrain.name]['backbone'] if pretrain else None
        metrics = step(work_dir, 'test', lambda: self.launcher.test(config, checkpoint, work_dir, options[:1]),
                       tag)
        return dict(config=config, checkpoint=str(checkpoint), backbone=backbone,
                    metrics=metrics, files=[str(checkpoint)])

    def test_published(self, stage: Stage, config: str, work_dir: Path) -> dict:
        """The pretraining stage of an arm given a published checkpoint: verified as the
        ImageClassifier of ``config``, tested on its val split, its backbone extracted."""
        published = self.published[stage.arm]
        checkpoint = published.fetch(work_dir)
        check_classifier_checkpoint(published, checkpoint, config, self.launcher.env)
        metrics = self.launcher.test(config, checkpoint, work_dir)
        backbone = work_dir / 'backbone.pth'
        written = extract_backbone(checkpoint, backbone, meta=dict(arm=stage.arm, seed=stage.seed, config=config,
                                                                   published=published.source),
                                   loaded=published.content)
        return dict(config=config, published=published.source, checkpoint=str(checkpoint),
                    backbone=str(backbone), metrics=metrics, files=[str(checkpoint), str(backbone)],
                    focused_dropout_history=written['meta']['focused_dropout_history'])

    def check_published(self) -> None:
        """Each published checkpoint verified (see :func:`check_classifier_checkpoint`) before
        any stage trains; a URL is read through mmengine's loader into the first seed's stage."""
        for arm, published in self.published.items():
            stage = self.stage(f'seed{self.seeds[0]}/pretrain_{arm}')
            checkpoint = published.fetch(stage.work_dir)
            check_classifier_checkpoint(published, checkpoint, self.training(stage)[0], self.launcher.env)

    def results(self, records: Dict[str, dict]) -> str:
        """The table (``write_results``) from the records of every training stage."""
        rows = []
        for stage in self.stages():
            if not (stage.final or stage.kind == PRETRAIN):
                pretrain = records[stage.needs[0]] if stage.needs else None
                rows.append(result_row(stage.arm, stage.seed, pretrain, records[stage.name]))
        return write_results(rows, self.work_dir, tiny=self.tiny)

    def prepare(self) -> None:
        """Before any stage: the tiny data generated with ``tiny``, published checkpoints checked."""
        if self.tiny:
            generate(self.data_root)
        self.check_published()

    def arguments(self) -> List[str]:
        """tools/run_pipeline.py's options for this pipeline (a Slurm job's command line)."""
        return ['--work-dir', str(self.work_dir), '--data-root', str(self.data_root),
                '--seeds', *map(str, self.seeds), '--arms', *self.arms,
                '--random-init-floor' if self.random_init_floor else '--no-random-init-floor',
                *(['--tiny'] if self.tiny else []),
                *(['--pretrained', *(f'{arm}={source}' for arm, source in self.pretrained.items())]
                  if self.pretrained else [])]

    def run(self) -> str:
        """Every stage in order (``prepare`` first); returns the results table."""
        self.prepare()
        return JobProgress(self).run()['table']


def run_pipeline(tiny: bool = False, work_dir: Optional[Path] = None,
                 data_root: Optional[Path] = None, random_init_floor: Optional[bool] = None,
                 stage: Optional[str] = None, slurm: Optional[SlurmOptions] = None,
                 dry_run: bool = False, record: Optional[Path] = None, command: str = '',
                 **settings) -> Optional[str]:
    """tools/run_pipeline.py: the pipeline with its defaults (work_dirs/pipeline[_tiny], data
    or data/tiny, the random-init floor with ``tiny``; paths made absolute); prints and returns
    the table. With ``stage`` only that stage runs (its upstream stages must be complete); the
    table only if it is ``results``. With ``slurm`` (and no ``stage``) every stage is submitted
    as a job (``fdrop_mm.experiments.slurm``; ``dry_run``: their scripts printed) and None returned.
    With ``record`` the table is also written there with the machine and ``command`` that made
    it (:func:`write_record`)."""
    if record and (slurm or stage not in (None, 'results')):
        raise ValueError('--record: only where the results stage runs in this process '
                         '(not with --launcher slurm, nor with a --stage other than results)')
    work_dir = Path(work_dir or f'work_dirs/pipeline{"_tiny" if tiny else ""}').resolve()
    pipeline = Pipeline(work_dir=work_dir,
                        data_root=Path(data_root or ('data/tiny' if tiny else 'data')).resolve(),
                        tiny=tiny, random_init_floor=tiny if random_init_floor is None else random_init_floor,
                        **settings)
    table = drive(pipeline, stage, slurm, dry_run)
    if table is None:
        return None
    print(table)
    print(f'[pipeline] wrote {work_dir / "results.md"} and {work_dir / "results.json"}')
    if record:
        write_record(Path(record), pipeline, command)
        print(f'[pipeline] wrote {record}')
    return table


def result_row(arm: str, seed: int, pretrain: Optional[dict], detection: dict) -> dict:
    """One run of the table in the paper's units: top-1 and top-5 as mmpretrain's Accuracy gives
    them (%), VOC07 mAP and each class's AP at IoU 0.5 converted from mmdet's fractions to %."""
    metrics = detection['metrics']
    if pretrain is None:
        pretraining = 'none (random init)'
    elif pretrain.get('published'):
        pretraining = f"published checkpoint: {pretrain['published']}"
    else:
        pretraining = f"trained here: {pretrain['config']}"
    return dict(
        arm=arm, seed=seed, pretraining=pretraining,
        top1=pretrain['metrics'].get('accuracy/top1') if pretrain else None,
        top5=pretrain['metrics'].get('accuracy/top5') if pretrain else None,
        mAP=PERCENT * metrics['pascal_voc/mAP'],
        class_ap={key.split('AP50_', 1)[1]: PERCENT * value
                  for key, value in metrics.items() if 'AP50_' in key},
        source_checkpoint=(pretrain.get('published') or pretrain['checkpoint']) if pretrain else None,
        detector_checkpoint=detection['checkpoint'],
        focused_dropout_history=(pretrain.get('focused_dropout_history') or []) if pretrain else [])


def pretraining_cell(runs: Sequence[dict], column: str, n: int) -> str:
    """``column`` (top-1 or top-5) over the distinct pretrainings of ``runs``: a published
    checkpoint, tested once per seed, counts once."""
    by_checkpoint = {run['source_checkpoint']: run[column] for run in runs}
    return format_cell(list(by_checkpoint.values()), n)


def paper_cell(arm: str, measure: str) -> str:
    return format_estimate(*PAPER_REPORTED.get(arm, {}).get(measure, (None, None)))


def write_results(rows: Sequence[dict], work_dir: Path, tiny: bool) -> str:
    """Write ``results.md`` (summary per arm, at full scale beside the paper's numbers; runs;
    per-class AP) and ``results.json`` (the rows, in the ``units`` it names)."""
    arms = list(dict.fromkeys(row['arm'] for row in rows))
    runs_of = {arm: [row for row in rows if row['arm'] == arm] for arm in arms}
    lines = ['# FocusedDropout pipeline results', '']
    if tiny:
        lines += [f'> {TINY_NOTE}', '']
    lines += ['## Summary', '', 'Mean ± sample standard deviation over the n seeds (a single value '
              'where n = 1), in %: top-1 and top-5 on the ImageNet val split, mAP on VOC2007 test.', '']
    columns = ['arm', 'pretraining', 'n', 'top-1 (%)', 'top-5 (%)', 'VOC07 mAP (%)']
    if not tiny:
        columns = [*columns[:4], "paper's top-1 (%)", *columns[4:], "paper's VOC07 mAP (%)"]
    summary = []
    for arm, runs in runs_of.items():
        n = len(runs)
        cells = {'arm': arm, 'n': str(n),
                 'pretraining': ' / '.join(dict.fromkeys(run['pretraining'] for run in runs)),
                 'top-1 (%)': pretraining_cell(runs, 'top1', n),
                 'top-5 (%)': pretraining_cell(runs, 'top5', n),
                 'VOC07 mAP (%)': format_cell([run['mAP'] for run in runs], n),
                 "paper's top-1 (%)": paper_cell(arm, 'top1'),
                 "paper's VOC07 mAP (%)": paper_cell(arm, 'mAP')}
        summary.append([cells[column] for column in columns])
    lines += markdown_table(columns, summary)
    if not tiny:
        lines += ['', f'> {PAPER_NOTE}']
    lines += ['', '## Runs', '']
    runs = []
    for row in rows:
        trained_here = row['pretraining'].startswith('trained here')
        source = row['source_checkpoint'] if trained_here else row['pretraining']
        runs.append([row['arm'], str(row['seed']), *run_cells(row), source])
    lines += markdown_table(['arm', 'seed', 'top-1 (%)', 'top-5 (%)', 'VOC07 mAP (%)', 'pretrained backbone'],
                            runs)
    resumed = [row for row in rows if len(row.get('focused_dropout_history') or []) > 1]
    if resumed:
        lines += ['', 'Pretrainings resumed with other FocusedDropout settings (the backbone\'s '
                  '`focused_dropout_history`):', '']
        lines += [f"- {row['arm']}, seed {row['seed']}: {focused_dropout_note(None, row['focused_dropout_history'])}"
                  for row in resumed]
    lines += ['', '## Per-class AP at IoU 0.5 on VOC2007 test (%), mean ± sample std over seeds', '']
    lines += markdown_table(
        ['class', *(f'{arm} (n={len(runs_of[arm])})' for arm in arms)],
        [[name, *(format_cell([run['class_ap'][name] for run in runs_of[arm]], len(runs_of[arm]))
                  for arm in arms)] for name in rows[0]['class_ap']])
    return write_table(work_dir, 'results', '\n'.join(lines) + '\n',
                       json_data=dict(tiny=tiny, units=UNITS, rows=rows))


def run_cells(row: dict) -> list:
    """One run's top-1, top-5 and mAP (:func:`format_cell`)."""
    return [format_cell([row[key]], 1) for key in ('top1', 'top5', 'mAP')]


def machine() -> Dict[str, str]:
    """What a run's floats depend on besides the code: the CPU model (``/proc/cpuinfo``), the
    cores and the torch version; one machine repeats its own numbers bit for bit, another CPU
    model gives others."""
    cpuinfo = Path('/proc/cpuinfo')
    first_cpu = dict(line.split(':', 1) for line in cpuinfo.read_text().split('\n\n')[0].splitlines()
                     if ':' in line)
    first_cpu = {key.strip(): value.strip() for key, value in first_cpu.items()}
    missing = [key for key in ('model name', 'cpu family', 'model', 'stepping') if key not in first_cpu]
    if missing:
        raise RuntimeError(f'{cpuinfo}: no {missing} for the first CPU, so its model is unknown')
    cpu = (f"{first_cpu['model name']} (family {first_cpu['cpu family']}, model {first_cpu['model']}, "
           f"stepping {first_cpu['stepping']})")
    return dict(CPU=cpu, cores=str(os.cpu_count()), torch=torch.__version__)


def commit() -> str:
    """The checkout's commit, with ``(uncommitted changes)`` where tracked files differ from it."""
    def git(*args):
        return subprocess.run(['git', '-C', str(REPO), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    changed = git('status', '--porcelain', '--untracked-files=no')
    return git('rev-parse', 'HEAD') + (' (uncommitted changes)' if changed else '')


def participation_of(config: str) -> float:
    """The participation of the FocusedDropoutHook that ``config`` sets."""
    hooks = [hook for hook in read_config(config).get('custom_hooks', [])
             if hook.get('type') == 'FocusedDropoutHook']
    if len(hooks) != 1 or 'participation' not in hooks[0]:
        raise ValueError(f'{config}: expected one FocusedDropoutHook with its participation set, '
                         f'found custom_hooks {hooks}')
    return hooks[0]['participation']


def record_table(rows: Sequence[dict], fd_participation: float) -> str:
    """Each run's top-1, top-5 and mAP, then each class's AP, in % (two decimals): the part of a
    record that one machine repeats exactly."""
    def label(row):
        if row['arm'] == RANDOM_INIT:
            return f'{RANDOM_INIT} (the floor)'
        if PRETRAIN_OF[row['arm']] == 'fd':
            return f"{row['arm']} (participation {fd_participation})"
        return row['arm']

    lines = markdown_table(['pretraining arm', 'seed', 'top-1 (%)', 'top-5 (%)', 'VOC07 mAP (%)'],
                           [[label(row), str(row['seed']), *run_cells(row)] for row in rows])
    lines += ['', *markdown_table(
        ['class AP at IoU 0.5 (%)', *(f'{row["arm"]}, seed {row["seed"]}' for row in rows)],
        [[name, *(format_cell([row['class_ap'][name]], 1) for row in rows)] for name in rows[0]['class_ap']])]
    return '\n'.join(lines) + '\n'


def write_record(path: Path, pipeline: Pipeline, command: str) -> None:
    """``path``: the table of ``pipeline``'s results.json (:func:`record_table`) under the
    machine, commit, date and command it came from and the FD arm's participation, read from
    its pretraining config (the tiny one uses 0.5, the paper 0.1, §2)."""
    fd_config = pipeline.config(PRETRAIN_CONFIGS, 'fd')
    participation = participation_of(fd_config)
    rows = json.loads((pipeline.work_dir / 'results.json').read_text())['rows']
    fields = dict(command=f'`{command}`', commit=commit(),
                  date=f'{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC', **machine(),
                  **{'FD arm': f'participation {participation} ({fd_config}); the paper uses 0.1'})
    text = '\n'.join([
        f'# Pipeline results{" (tiny)" if pipeline.tiny else ""}, seeds '
        f'{", ".join(map(str, pipeline.seeds))}', '',
        'Written by `fdrop_mm.experiments.pipeline.write_record` at the end of the command below. '
        'A rerun on the same CPU model and torch version repeats the table bit for bit; another CPU '
        'model gives other numbers.', '',
        *(f'- {key}: {value}' for key, value in fields.items()), '', '## Table', '',
        record_table(rows, participation)])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
