"""The disk each stage's checkpoints take at the paper's scale, from the configs themselves
(docs/checkpoints.md): the model each config builds, its optimizer after one step (SGD's momentum
buffers exist from the first step, for the parameters that get a gradient: a frozen stage's get
none), both serialized as mmengine's checkpoint holds them, times the checkpoints the config's
``CheckpointHook`` keeps (``max_keep_ckpts``), plus a best checkpoint (weights only, as
mmengine saves it) where the config keeps one, and a pretraining's extracted backbone.

mmengine deletes the oldest kept checkpoint before it writes the next, so the kept number is
also the most there ever are. A checkpoint also holds the config text and the logged scalars,
small beside the tensors and not counted.
"""
import dataclasses
import importlib
import io
from pathlib import Path
from typing import List, Optional

import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from .launcher import REPO
from .pipeline import PRETRAIN, Pipeline
from .stages import read_config

MIB = 2 ** 20
GIB = 2 ** 30
BEGIN = '<!-- checkpoint disk: written by tools/misc/checkpoint_disk.py -->'
END = '<!-- end of checkpoint disk -->'
SWEEP_NETWORKS = ('configs/cifar', 'configs/tinyimagenet')  # each network's baseline config there


@dataclasses.dataclass(frozen=True)
class StageDisk:
    """What one stage keeps on disk: ``checkpoints`` x (``weights`` + ``optimizer``) bytes,
    plus ``extra`` bytes (a best checkpoint, an extracted backbone) described by ``extra_what``."""
    stage: str
    config: str
    weights: int
    optimizer: int
    checkpoints: int
    extra: int = 0
    extra_what: str = ''

    @property
    def checkpoint(self) -> int:
        return self.weights + self.optimizer

    @property
    def total(self) -> int:
        return self.checkpoints * self.checkpoint + self.extra


def saved_bytes(tensors) -> int:
    """The bytes ``torch.save`` writes for ``tensors`` (a state dict)."""
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return buffer.getbuffer().nbytes


def stage_disk(stage: str, config: str, backbone: bool = False) -> StageDisk:
    """``config`` (relative to the repository) built as its training builds it; with
    ``backbone``, the backbone that ``fdrop_mm.transfer.extract_backbone`` writes is added."""
    cfg = read_config(config)
    scope = cfg.get('default_scope')
    init_default_scope(scope)
    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:  # as mmengine's Runner merges it
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = importlib.import_module(f'{scope}.registry').MODELS.build(model_cfg)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.grad = torch.zeros_like(parameter)
    optim_wrapper.step()
    hook = cfg.default_hooks.checkpoint
    kept = hook.get('max_keep_ckpts', -1)
    if hook.get('interval') != 1 or kept < 1:
        raise ValueError(f'{config}: default_hooks.checkpoint is {hook}: expected a checkpoint every '
                         'epoch (interval=1) and a bound on those kept (max_keep_ckpts)')
    state = model.state_dict()
    weights = saved_bytes(state)
    if backbone:
        extra = saved_bytes({key: value for key, value in state.items() if key.startswith('backbone.')})
        extra_what = 'extracted backbone'
    elif hook.get('save_best'):
        extra, extra_what = weights, 'best checkpoint, weights only'
    else:
        extra, extra_what = 0, ''
    return StageDisk(stage, config, weights, saved_bytes(optim_wrapper.state_dict()), kept, extra, extra_what)


def pipeline_disk() -> List[StageDisk]:
    """Each training stage of one seed of the full-scale pipeline, every arm (§5.3)."""
    pipeline = Pipeline(work_dir=Path('work_dirs/pipeline'), data_root=Path('data'),
                        arms=('baseline', 'fd', 'fd+fd-finetune'))
    return [stage_disk(stage.name, pipeline.training(stage)[0], backbone=stage.kind == PRETRAIN)
            for stage in pipeline.stages() if not stage.final and stage.seed == pipeline.seeds[0]]


def sweep_disk() -> List[StageDisk]:
    """One run of each network of the classification sweeps (§5.1-5.2), from its baseline config."""
    return [stage_disk(path.stem, str(path.relative_to(REPO)))
            for folder in SWEEP_NETWORKS for path in sorted((REPO / folder).glob('*.py'))]


def mib(size: int) -> str:
    return f'{size / MIB:,.0f} MiB'


def disk_section(pipeline: Optional[List[StageDisk]] = None, sweep: Optional[List[StageDisk]] = None) -> str:
    """The markdown of docs/checkpoints.md's disk section (between :data:`BEGIN` and :data:`END`)."""
    pipeline = pipeline_disk() if pipeline is None else pipeline
    sweep = sweep_disk() if sweep is None else sweep
    header = ['| stage | config | weights | optimizer state | checkpoints kept | besides | disk |',
              '|---|---|---|---|---|---|---|']

    def rows(entries):
        return [f'| {entry.stage} | `{entry.config}` | {mib(entry.weights)} | {mib(entry.optimizer)} | '
                f'{entry.checkpoints} | {f"{mib(entry.extra)}: {entry.extra_what}" if entry.extra else "–"} | '
                f'**{mib(entry.total)}** |' for entry in entries]
    default_arms = [entry for entry in pipeline if not entry.stage.endswith('fd+fd-finetune')]
    return '\n'.join([
        BEGIN, '',
        'Computed from the configs by `fdrop_mm.experiments.disk` (`python tools/misc/checkpoint_disk.py '
        '--write docs/checkpoints.md`; tests/test_experiments_stages.py checks this text). MiB = 2^20 bytes.', '',
        'The pipeline at full scale, per seed (`python tools/run_pipeline.py --launcher pytorch --gpus 8`):',
        '', *header, *rows(pipeline), '',
        f'One seed of the default arms (baseline, fd): {sum(e.total for e in default_arms) / GIB:.1f} GiB; '
        f'with fd+fd-finetune: {sum(e.total for e in pipeline) / GIB:.1f} GiB.', '',
        'A run of the classification sweeps (`python tools/run_sweep.py --table ...`), per network and '
        'dataset, from its baseline config (the cells\' regularizers hold no parameters):', '',
        *header, *rows(sweep), '', END])


def write_disk_section(doc: Optional[Path] = None) -> None:
    """Print :func:`disk_section`; with ``doc``, also put it in place of the text between
    :data:`BEGIN` and :data:`END` there."""
    section = disk_section()
    print(section)
    if doc is None:
        return
    text = doc.read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError(f'{doc}: expected one {BEGIN!r} and one {END!r} line around the disk section')
    before, rest = text.split(BEGIN)
    doc.write_text(before + section + rest.split(END, 1)[1])
