"""The paper's classification experiments (§5.1-5.2, Tables 1-4 and Fig. 6): a table's cells x
seeds, each trained from its committed config (``tables``) by the launcher, finished runs
skipped, then the tables written (``aggregate``).

A run is ``<work_dir>/<run>/seed<k>``, seeded with ``randomness.seed=k`` and started with
``resume=True``: its ``done.json`` marks it finished, so a rerun skips it and resumes an
interrupted one from its last checkpoint. ``tiny`` generates CIFAR-10, CIFAR-100 and Tiny
ImageNet (``fdrop_mm.testing.tiny_data``) and trains each cell for a few CPU iterations, the
schedule given as ``--cfg-options`` at launch (:func:`tiny_options`).
"""
import dataclasses
import shlex
from pathlib import Path
from typing import List, Optional, Sequence

from fdrop_mm.testing.tiny_data import DATASET_FOLDERS, generate

from .aggregate import write_tables
from .launcher import REPO, Launcher
from .stages import DONE, run_stage
from .tables import TABLES, Cell, select_cells

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
class Sweep:
    """The cells of ``tables`` (only ``cells``, ids ``<network>/<method>``, if given) x ``seeds``
    in ``work_dir``; ``cfg_options`` go to every run (they are not part of a run's name)."""
    tables: Sequence[str]
    work_dir: Path
    launcher: Launcher = Launcher()
    cells: Optional[Sequence[str]] = None
    seeds: Sequence[int] = (0, 1, 2)
    tiny: bool = False
    data_root: Path = Path('data/tiny')
    dry_run: bool = False
    cfg_options: Sequence[str] = ()

    def __post_init__(self):
        self.selected = list({cell.run: cell for cell in select_cells(self.tables, self.cells)}.values())
        roots = {'CIFAR10_ROOT': 'cifar10', 'CIFAR100_ROOT': 'cifar100',
                 'TINY_IMAGENET_200_ROOT': 'tinyimagenet'} if self.tiny else {}
        self.launcher = self.launcher.for_experiment(
            'sweep', **{variable: str(self.data_root / DATASET_FOLDERS[dataset])
                        for variable, dataset in roots.items()})

    def run_cell(self, cell: Cell, seed: int) -> None:
        """Train one run, or with ``dry_run`` print its command (or that it is done)."""
        work_dir = self.work_dir / cell.run / f'seed{seed}'
        options = [f'randomness.seed={seed}', 'resume=True',
                   *(tiny_options(cell, self.data_root) if self.tiny else []), *self.cfg_options]
        if self.dry_run:
            print(f'# skip {work_dir} ({DONE})' if (work_dir / DONE).is_file() else
                  shlex.join(self.launcher.train_command(REPO / cell.config, work_dir, options)), flush=True)
            return

        def produce(work_dir):
            checkpoint = self.launcher.train(REPO / cell.config, work_dir, options)
            return dict(cell=cell.id, config=cell.config, seed=seed, checkpoint=str(checkpoint),
                        files=[str(checkpoint)])

        run_stage(work_dir, produce, tag='sweep')

    def run(self) -> Optional[str]:
        """Every run (the tiny data first with ``tiny``, also for a dry run: the commands read
        its class count); returns the tables' markdown, None for a dry run."""
        if self.tiny:
            generate(self.data_root, only=TINY_DATASETS)
        for cell in self.selected:
            for seed in self.seeds:
                self.run_cell(cell, seed)
        if self.dry_run:
            return None
        return write_tables([TABLES[key] for key in self.tables], self.work_dir)


def run_sweep(tables: Sequence[str], tiny: bool = False, work_dir: Optional[Path] = None,
              data_root: Path = Path('data/tiny'), **settings) -> Optional[str]:
    """tools/run_sweep.py: the sweep in ``work_dir`` (default work_dirs/classification, with
    ``tiny`` work_dirs/classification_tiny), paths made absolute; prints and returns the tables."""
    work_dir = Path(work_dir or f'work_dirs/classification{"_tiny" if tiny else ""}')
    text = Sweep(tables, work_dir.resolve(), tiny=tiny, data_root=Path(data_root).resolve(),
                 **settings).run()
    if text is not None:
        print(text)
    return text
