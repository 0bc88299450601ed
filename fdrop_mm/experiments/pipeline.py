"""The experiment of paper §5.3 for each arm and seed: ResNet-50 pretraining on ImageNet
(mmpretrain) -> backbone extraction -> RetinaNet-FPN fine-tune on VOC 07+12 (mmdet) -> VOC2007
test, then a comparison table (markdown and JSON).

Each stage is skipped on a rerun while its ``done.json`` matches its inputs (``stages``).
``tiny`` runs the CPU smoke configs (configs/tiny/) on data that
``fdrop_mm.testing.tiny_data`` generates, and adds a detector trained from a random backbone,
the floor a transfer must beat.
"""
import dataclasses
import json
import statistics
from pathlib import Path
from typing import Optional, Sequence

from fdrop_mm.testing.tiny_data import DATASET_FOLDERS, MANIFEST, generate
from fdrop_mm.transfer import extract_backbone

from .launcher import Launcher
from .stages import config_sha256, run_stage

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
RANDOM_INIT = 'random-init'  # detector trained from a randomly initialised backbone: the floor
TINY_NOTE = ('Tiny synthetic data: this table shows that the pipeline works (pretrain, transfer, '
             'fine-tune, evaluate), not the paper\'s effect; on a few hundred synthetic images the '
             'difference between arms is noise. Read the mean ± std over seeds, not a ranking.')


@dataclasses.dataclass
class Pipeline:
    """Pretraining, transfer, fine-tuning and testing of ``arms`` x ``seeds`` under
    ``work_dir/seed<k>/{pretrain,detection}_<arm>``, on the data under ``data_root``
    (``imagenet/`` and ``VOCdevkit/``)."""
    work_dir: Path
    data_root: Path
    launcher: Launcher = Launcher()
    tiny: bool = False
    seeds: Sequence[int] = (0, )
    arms: Sequence[str] = ('baseline', 'fd')
    random_init_floor: bool = False

    def __post_init__(self):
        unknown = [arm for arm in self.arms if arm not in ARMS]
        if unknown:
            raise ValueError(f'arms: unknown {unknown}, expected some of {list(ARMS)}')
        self.launcher = self.launcher.for_experiment(
            'pipeline', IMAGENET_ROOT=str(self.data_root / DATASET_FOLDERS['imagenet']),
            VOC_ROOT=str(self.data_root / DATASET_FOLDERS['voc']) + '/')

    def config(self, configs: dict, arm: str) -> str:
        """The arm's config in ``configs``: the CPU smoke one with ``tiny``."""
        full_scale, tiny = configs[arm]
        return tiny if self.tiny else full_scale

    def stage_inputs(self, config: str, options: Sequence[str], upstream: Optional[dict] = None) -> dict:
        """What a training stage reads: its config with all it inherits and its options (as one
        hash), the tiny datasets' manifests, and the upstream stage's inputs."""
        manifests = {}
        for dataset in ('imagenet', 'voc'):
            manifest = self.data_root / DATASET_FOLDERS[dataset] / MANIFEST
            if manifest.is_file():
                manifests[DATASET_FOLDERS[dataset]] = json.loads(manifest.read_text())
        return dict(config=config, config_sha256=config_sha256(config, options, self.launcher.env),
                    options=list(options), data=manifests, upstream=upstream)

    def pretrain(self, arm: str, seed: int) -> dict:
        config = self.config(PRETRAIN_CONFIGS, arm)
        options = [f'randomness.seed={seed}']

        def produce(work_dir):
            checkpoint = self.launcher.train(config, work_dir, options)
            metrics = self.launcher.test(config, checkpoint, work_dir)
            backbone = work_dir / 'backbone.pth'
            extract_backbone(checkpoint, backbone, meta=dict(arm=arm, seed=seed, config=config))
            return dict(config=config, checkpoint=str(checkpoint), backbone=str(backbone),
                        metrics=metrics, files=[str(checkpoint), str(backbone)])

        return run_stage(self.work_dir / f'seed{seed}' / f'pretrain_{arm}', produce,
                         self.stage_inputs(config, options))

    def finetune(self, arm: str, seed: int, pretrain: Optional[dict]) -> dict:
        """Fine-tune the detector of ``arm`` from ``pretrain``'s backbone (None: random)."""
        backbone = pretrain and pretrain['backbone']
        config = self.config(DETECTION_CONFIGS, arm if arm != RANDOM_INIT else 'baseline')
        init = ('model.backbone.init_cfg=None' if backbone is None
                else f'model.backbone.init_cfg.checkpoint={backbone}')
        options = [init, f'randomness.seed={seed}']

        def produce(work_dir):
            checkpoint = self.launcher.train(config, work_dir, options)
            metrics = self.launcher.test(config, checkpoint, work_dir, [init])
            return dict(config=config, checkpoint=str(checkpoint), backbone=backbone,
                        metrics=metrics, files=[str(checkpoint)])

        return run_stage(self.work_dir / f'seed{seed}' / f'detection_{arm}', produce,
                         self.stage_inputs(config, options, pretrain and pretrain['inputs']))

    def run(self) -> str:
        """Every stage (the tiny data first with ``tiny``); returns the results table."""
        if self.tiny:
            generate(self.data_root)
        rows = []
        for seed in self.seeds:
            pretrained = {source: self.pretrain(source, seed)
                          for source in sorted({PRETRAIN_OF[arm] for arm in self.arms})}
            for arm in self.arms:
                source = pretrained[PRETRAIN_OF[arm]]
                rows.append(result_row(arm, seed, source, self.finetune(arm, seed, source)))
            if self.random_init_floor:
                rows.append(result_row(RANDOM_INIT, seed, None,
                                       self.finetune(RANDOM_INIT, seed, None)))
        return write_results(rows, self.work_dir, tiny=self.tiny)


def run_pipeline(tiny: bool = False, work_dir: Optional[Path] = None,
                 data_root: Optional[Path] = None, random_init_floor: Optional[bool] = None,
                 **settings) -> str:
    """tools/run_pipeline.py: the pipeline with its defaults (work_dirs/pipeline[_tiny], data
    or data/tiny, the random-init floor with ``tiny``); prints and returns the table."""
    work_dir = Path(work_dir or f'work_dirs/pipeline{"_tiny" if tiny else ""}')
    table = Pipeline(work_dir=work_dir, data_root=Path(data_root or ('data/tiny' if tiny else 'data')),
                     tiny=tiny, random_init_floor=tiny if random_init_floor is None else random_init_floor,
                     **settings).run()
    print(table)
    print(f'[pipeline] wrote {work_dir / "results.md"} and {work_dir / "results.json"}')
    return table


def result_row(arm: str, seed: int, pretrain: Optional[dict], detection: dict) -> dict:
    metrics = detection['metrics']
    return dict(
        arm=arm, seed=seed,
        top1=pretrain['metrics'].get('accuracy/top1') if pretrain else None,
        top5=pretrain['metrics'].get('accuracy/top5') if pretrain else None,
        mAP=metrics['pascal_voc/mAP'],
        class_ap={key.split('AP50_', 1)[1]: value for key, value in metrics.items() if 'AP50_' in key},
        source_checkpoint=pretrain['checkpoint'] if pretrain else None,
        detector_checkpoint=detection['checkpoint'])


def format_mean_std(values) -> str:
    """Mean ± sample std of the values that are not None, '–' without any."""
    values = [value for value in values if value is not None]
    if not values:
        return '–'
    if len(values) == 1:
        return f'{values[0]:.4g}'
    return f'{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}'


def write_results(rows: Sequence[dict], work_dir: Path, tiny: bool) -> str:
    """Write ``results.md`` (summary per arm, runs, per-class AP) and ``results.json``."""
    arms = list(dict.fromkeys(row['arm'] for row in rows))
    lines = ['# FocusedDropout pipeline results', '']
    if tiny:
        lines += [f'> {TINY_NOTE}', '']
    lines += ['## Summary (mean ± std over seeds)', '',
              '| arm | seeds | top-1 (%) | top-5 (%) | VOC07 mAP |', '|---|---|---|---|---|']
    for arm in arms:
        runs = [row for row in rows if row['arm'] == arm]
        lines.append(f"| {arm} | {len(runs)} | {format_mean_std([r['top1'] for r in runs])} | "
                     f"{format_mean_std([r['top5'] for r in runs])} | "
                     f"{format_mean_std([r['mAP'] for r in runs])} |")
    lines += ['', '## Runs', '', '| arm | seed | top-1 (%) | top-5 (%) | VOC07 mAP | source checkpoint |',
              '|---|---|---|---|---|---|']
    for row in rows:
        lines.append(f"| {row['arm']} | {row['seed']} | {format_mean_std([row['top1']])} | "
                     f"{format_mean_std([row['top5']])} | {row['mAP']:.4f} | "
                     f"{row['source_checkpoint'] or '(random init)'} |")
    lines += ['', '## Per-class AP at IoU 0.5 (mean over seeds)', '',
              '| class | ' + ' | '.join(arms) + ' |', '|---|' + '---|' * len(arms)]
    for name in rows[0]['class_ap']:
        cells = [format_mean_std([r['class_ap'][name] for r in rows if r['arm'] == arm]) for arm in arms]
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    table = '\n'.join(lines) + '\n'
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / 'results.md').write_text(table)
    (work_dir / 'results.json').write_text(json.dumps(dict(tiny=tiny, rows=rows), indent=2))
    return table
