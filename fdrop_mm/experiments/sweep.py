"""The paper's classification experiments (§5.1-5.2, Tables 1-4 and Fig. 6): a table's cells x
seeds, each trained from its committed config (``tables``) by the launcher, finished runs
skipped, then the tables written (``aggregate``).

A run is ``<work_dir>/<run>/seed<k>``, seeded with ``randomness.seed=k``, a stage as the
pipeline's are (``stages``): its ``done.json`` marks it finished, so a rerun skips it; an
interrupted one resumes from its newest checkpoint if its inputs (config, options, data) are
unchanged, and starts afresh, the earlier files moved aside, if not. ``tiny`` generates
CIFAR-10, CIFAR-100 and Tiny ImageNet (``fdrop_mm.tiny_data``) and trains each cell for
a few CPU iterations, the schedule given as ``--cfg-options`` at launch (:func:`tiny_options`).
"""
import dataclasses
import shlex
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from fdrop_mm.tiny_data import DATASET_FOLDERS, generate

from .aggregate import write_tables
from .command_line import drive
from .launcher import REPO, TOOLS, Launcher
from .progress import JobProgress
from .slurm import SlurmOptions
from .stages import DONE, FINAL, Stage, StageGraph, train, training_inputs
from .tables import TABLES, Cell, select_cells

CELL = 'cell'  # the stage kind of a run: one cell of a table, one seed
TINY_DATASETS = ('cifar10', 'cifar100', 'tinyimagenet')
TINY_BATCH = 8
TINY_SAMPLES = 16  # per split: 2 iterations per epoch
TINY_EPOCHS = 2
# A smoke run has a handful of steps: at the paper's 0.1 it might have no focused one.
TINY_PARTICIPATION = 0.5


def tiny_options(cell: Cell, data_root: Path) -> List[str]:
    """A few CPU iterations on the generated data: ``TINY_SAMPLES`` images per split, batch
    ``TINY_BATCH``, ``TINY_EPOCHS`` epochs (each validated), CIFAR's md5 check replaced by its
    structure check, FocusedDropout's participation raised to ``TINY_PARTICIPATION``."""
    options = [f'train_cfg.max_epochs={TINY_EPOCHS}', f'param_scheduler.milestones=[{TINY_EPOCHS - 1}]',
               'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=1']
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        options += [f'{loader}.batch_size={TINY_BATCH}', f'{loader}.num_workers=0',
                    f'{loader}.persistent_workers=False', f'{loader}.dataset.indices={TINY_SAMPLES}']
        if cell.dataset != 'tinyimagenet':
            options.append(f'{loader}.dataset.verify_md5=False')
    if cell.dataset == 'tinyimagenet':
        wnids = data_root / DATASET_FOLDERS['tinyimagenet'] / 'wnids.txt'
        num_classes = len(wnids.read_text().split())
        options += [f'model.head.num_classes={num_classes}', f'data_preprocessor.num_classes={num_classes}']
    method = cell.method
    if method.regularizer == 'focused' and 0 < method.participation < TINY_PARTICIPATION:
        options.append(f'custom_hooks.0.participation={TINY_PARTICIPATION}')
    return options


@dataclasses.dataclass
class Sweep(StageGraph):
    """The cells of ``tables`` (only ``cells``, ids ``<network>/<method>``, if given) x ``seeds``
    in ``work_dir``; ``cfg_options`` go to every run (they are not part of a run's name). Its
    stages (:meth:`stages`) are the runs, independent of each other, and ``tables``."""
    tables: Sequence[str]
    work_dir: Path
    launcher: Launcher = Launcher()
    cells: Optional[Sequence[str]] = None
    seeds: Sequence[int] = (0, 1, 2)
    tiny: bool = False
    data_root: Path = Path('data/tiny')
    dry_run: bool = False
    cfg_options: Sequence[str] = ()
    tag = 'sweep'
    tool = TOOLS / 'run_sweep.py'

    def __post_init__(self):
        self.selected = list({cell.run: cell for cell in select_cells(self.tables, self.cells)}.values())
        roots = {'CIFAR10_ROOT': 'cifar10', 'CIFAR100_ROOT': 'cifar100',
                 'TINY_IMAGENET_200_ROOT': 'tinyimagenet'} if self.tiny else {}
        self.launcher = self.launcher.for_experiment(
            'sweep', **{variable: str(self.data_root / DATASET_FOLDERS[dataset])
                        for variable, dataset in roots.items()})

    def build_stages(self) -> List[Stage]:
        """A run ``<run>/seed<k>`` per cell and seed, then ``tables`` (needing them all)."""
        stages = [Stage(f'{cell.run}/seed{seed}', f'train {cell.id} ({cell.config}), seed {seed}',
                        self.work_dir / cell.run / f'seed{seed}', CELL, cell=cell.id, seed=seed)
                  for cell in self.selected for seed in self.seeds]
        names = ', '.join(f'table{key}' for key in self.tables)
        return [*stages, Stage('tables', f'write {names} (.md, .csv) in {self.work_dir}', self.work_dir,
                               FINAL, tuple(stage.name for stage in stages))]

    def cell(self, stage: Stage) -> Cell:
        """The cell that run ``stage`` trains."""
        return next(cell for cell in self.selected if cell.id == stage.cell)

    def options(self, stage: Stage) -> List[str]:
        """A run's ``--cfg-options``: its seed, the tiny schedule, ``cfg_options``."""
        return [f'randomness.seed={stage.seed}',
                *(tiny_options(self.cell(stage), self.data_root) if self.tiny else []), *self.cfg_options]

    def read_inputs(self, stage: Stage) -> Optional[dict]:
        """A run's config and options (:func:`training_inputs`), with ``tiny`` the generated data's
        manifests; the tables (final) have none."""
        if stage.final:
            return None
        folders = [self.data_root / DATASET_FOLDERS[dataset] for dataset in TINY_DATASETS] if self.tiny else []
        return training_inputs(self.cell(stage).config, self.options(stage), self.launcher.env, folders)

    def produce(self, stage: Stage, upstream: Dict[str, dict], work_dir: Path) -> dict:
        if stage.final:
            return dict(table=write_tables([TABLES[key] for key in self.tables], self.work_dir))
        cell = self.cell(stage)
        checkpoint = train(self.launcher, REPO / cell.config, work_dir, self.options(stage))
        return dict(cell=cell.id, config=cell.config, seed=stage.seed, checkpoint=str(checkpoint),
                    files=[str(checkpoint)])

    def print_commands(self) -> None:
        """Each run's command, or that it is done."""
        for stage in self.stages()[:-1]:
            print(f'# skip {stage.work_dir} ({DONE})' if (stage.work_dir / DONE).is_file() else
                  shlex.join(self.launcher.train_command(REPO / self.cell(stage).config, stage.work_dir,
                                                         self.options(stage))), flush=True)

    def prepare(self) -> None:
        """The tiny data with ``tiny`` (also for a dry run: the commands read its class count)."""
        if self.tiny:
            generate(self.data_root, only=TINY_DATASETS)

    def arguments(self) -> List[str]:
        """tools/run_sweep.py's options for this sweep (a Slurm job's command line)."""
        return ['--table', *self.tables, '--seeds', *map(str, self.seeds), '--work-dir', str(self.work_dir),
                '--data-root', str(self.data_root), *(['--tiny'] if self.tiny else []),
                *(['--cells', *self.cells] if self.cells else []),
                *(['--cfg-options', *self.cfg_options] if self.cfg_options else [])]

    def run(self) -> Optional[str]:
        """Every run (``prepare`` first); returns the tables' markdown, None for a dry run
        (``print_commands``)."""
        self.prepare()
        if self.dry_run:
            self.print_commands()
            return None
        return JobProgress(self).run()['table']


def run_sweep(tables: Sequence[str], tiny: bool = False, work_dir: Optional[Path] = None,
              data_root: Path = Path('data/tiny'), stage: Optional[str] = None,
              slurm: Optional[SlurmOptions] = None, **settings) -> Optional[str]:
    """tools/run_sweep.py: the sweep in ``work_dir`` (default work_dirs/classification, with
    ``tiny`` work_dirs/classification_tiny), paths made absolute; prints and returns the tables.
    With ``stage`` only that run (``<run>/seed<k>``) or ``tables``; the tables only for ``tables``.
    With ``slurm`` (and no ``stage``) every run is submitted as a job, then ``tables`` after them
    (``fdrop_mm.experiments.slurm``); None returned."""
    work_dir = Path(work_dir or f'work_dirs/classification{"_tiny" if tiny else ""}')
    sweep = Sweep(tables, work_dir.resolve(), tiny=tiny, data_root=Path(data_root).resolve(), **settings)
    text = drive(sweep, stage, slurm, sweep.dry_run)
    if text is not None:
        print(text)
    return text
