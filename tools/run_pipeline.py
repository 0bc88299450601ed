"""The whole experiment of paper §5.3 in one command, for each arm and seed:
ResNet-50 pretraining (mmpretrain) -> backbone extraction -> RetinaNet fine-tune on
VOC 07+12 (mmdet) -> VOC2007 test, then a comparison table (markdown and JSON).

Stages whose outputs are complete are skipped when the command is rerun. ``--tiny`` runs
the CPU smoke configs on data from tools/make_tiny_data.py (generated if absent).

    python tools/run_pipeline.py --tiny                       # one CPU machine, minutes
    python tools/run_pipeline.py --launcher pytorch --gpus 8  # the real run, 8 GPUs
    python tools/run_pipeline.py --launcher slurm --gpus 16 --partition p  # slurm
"""
import argparse
import ast
import hashlib
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / 'tools'

CONFIGS = {
    'full': dict(
        pretrain={'baseline': 'configs/pretrain/resnet50_8xb32_in1k.py',
                  'fd': 'configs/pretrain/resnet50_fd_8xb32_in1k.py'},
        detection={'baseline': 'configs/detection/retinanet_r50_fpn_1x_voc0712_from-baseline.py',
                   'fd': 'configs/detection/retinanet_r50_fpn_1x_voc0712_from-fd.py',
                   'fd+fd-finetune': 'configs/detection/retinanet_r50_fpn_1x_voc0712_from-fd_fd-finetune.py'}),
    'tiny': dict(
        pretrain={'baseline': 'configs/tiny/resnet50_tiny-imagenet.py',
                  'fd': 'configs/tiny/resnet50_fd_tiny-imagenet.py'},
        detection={'baseline': 'configs/tiny/retinanet_r50_fpn_voc0712_tiny.py',
                   'fd': 'configs/tiny/retinanet_r50_fpn_voc0712_tiny.py',
                   'fd+fd-finetune': 'configs/tiny/retinanet_r50_fpn_voc0712_tiny_fd-finetune.py'}),
}
RANDOM_INIT = 'random-init'  # detector trained from a randomly initialised backbone: the floor
PRETRAIN_OF = {'baseline': 'baseline', 'fd': 'fd', 'fd+fd-finetune': 'fd'}
TINY_NOTE = ('Tiny synthetic data: this table shows that the pipeline works (pretrain, transfer, '
             'fine-tune, evaluate), not the paper\'s effect; on a few hundred synthetic images the '
             'difference between arms is noise. Read the mean ± std over seeds, not a ranking.')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--tiny', action='store_true', help='CPU smoke configs on generated tiny data')
    parser.add_argument('--work-dir', default=None,
                        help='outputs (default work_dirs/pipeline or work_dirs/pipeline_tiny)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--arms', nargs='+', default=['baseline', 'fd'],
                        choices=['baseline', 'fd', 'fd+fd-finetune'],
                        help='detection arms; fd+fd-finetune also uses FD while fine-tuning')
    parser.add_argument('--random-init-floor', action=argparse.BooleanOptionalAction, default=None,
                        help='also fine-tune from a random backbone (default: on with --tiny)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    parser.add_argument('--gpus', type=int, default=1, help='processes (GPUs) per training run')
    parser.add_argument('--partition', help='slurm partition (with --launcher slurm)')
    parser.add_argument('--data-root', default=None,
                        help='folder holding imagenet/ and VOCdevkit/ (default data, or data/tiny)')
    args = parser.parse_args(argv)
    if args.launcher == 'slurm' and not args.partition:
        parser.error('--launcher slurm needs --partition')
    if args.launcher == 'none' and args.gpus != 1:
        parser.error('--gpus > 1 needs --launcher pytorch or slurm')
    if args.random_init_floor is None:
        args.random_init_floor = args.tiny
    kind = 'tiny' if args.tiny else 'full'
    args.work_dir = Path(args.work_dir or f'work_dirs/pipeline{"_tiny" if args.tiny else ""}')
    args.data_root = Path(args.data_root or ('data/tiny' if args.tiny else 'data'))
    args.configs = CONFIGS[kind]
    return args


class Pipeline:
    def __init__(self, args):
        self.args = args
        self.env = {**os.environ,
                    'IMAGENET_ROOT': str(args.data_root / 'imagenet'),
                    'VOC_ROOT': str(args.data_root / 'VOCdevkit') + '/',
                    'PYTHON': sys.executable,
                    'GPUS': str(args.gpus),  # read by slurm_train.sh
                    'PYTHONPATH': os.pathsep.join(filter(None, [str(REPO), os.environ.get('PYTHONPATH')]))}

    # running -----------------------------------------------------------
    def _run(self, cmd, log: Path):
        print(f'[pipeline] $ {" ".join(map(str, cmd))}  (log: {log})', flush=True)
        with open(log, 'w') as f:
            proc = subprocess.run([str(c) for c in cmd], env=self.env, cwd=REPO, stdout=f,
                                  stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            tail = ''.join(log.read_text().splitlines(keepends=True)[-30:])
            raise RuntimeError(f'stage failed (exit {proc.returncode}): see {log}\n{tail}')

    def train(self, config, work_dir: Path, options=()):
        a = self.args
        extra = ['--work-dir', work_dir, *(['--cfg-options', *options] if options else [])]
        if a.launcher == 'none':
            cmd = [sys.executable, TOOLS / 'train.py', config, *extra]
        elif a.launcher == 'pytorch':
            cmd = ['bash', TOOLS / 'dist_train.sh', config, a.gpus, *extra]
        else:
            cmd = ['bash', TOOLS / 'slurm_train.sh', a.partition, work_dir.name, config, work_dir,
                   *extra[2:]]
        self._run(cmd, work_dir / 'train.out')
        return last_checkpoint(work_dir)

    def test(self, config, checkpoint, work_dir: Path, options=()) -> dict:
        a = self.args
        out = work_dir / 'metrics.json'
        extra = ['--work-dir', work_dir / 'test', '--metrics-out', out,
                 *(['--cfg-options', *options] if options else [])]
        if a.launcher == 'pytorch':
            cmd = ['bash', TOOLS / 'dist_test.sh', config, checkpoint, a.gpus, *extra]
        else:  # a single process: testing is short next to training
            cmd = [sys.executable, TOOLS / 'test.py', config, checkpoint, *extra]
        self._run(cmd, work_dir / 'test.out')
        return json.loads(out.read_text())

    # stages --------------------------------------------------------------
    def stage(self, work_dir: Path, produce, inputs=None):
        """Run ``produce`` unless work_dir/done.json exists with its outputs present and was made
        from the same ``inputs`` (a JSON-able description of what the stage reads); a complete
        stage whose inputs changed (another config, regenerated data, a new backbone) is rerun,
        not reused."""
        done = work_dir / 'done.json'
        if done.is_file():
            record = json.loads(done.read_text())
            if all(Path(p).is_file() for p in record.get('files', [])):
                if record.get('inputs') == inputs:
                    print(f'[pipeline] skip {work_dir} (complete)', flush=True)
                    return record
                print(f'[pipeline] rerun {work_dir}: its inputs changed since done.json', flush=True)
        work_dir.mkdir(parents=True, exist_ok=True)
        record = dict(produce(work_dir), inputs=inputs)
        done.write_text(json.dumps(record, indent=2))
        return record

    def stage_inputs(self, config, options, upstream=None) -> dict:
        """What a training stage reads: its config and the repository configs it inherits from,
        its options, the tiny datasets' manifests, and the upstream stage's inputs."""
        digest = hashlib.sha256()
        for path in config_chain(REPO / config):
            digest.update(str(path.relative_to(REPO)).encode() + path.read_bytes())
        manifests = {}
        for dataset in ('imagenet', 'VOCdevkit'):
            manifest = self.args.data_root / dataset / 'tiny_data.json'
            if manifest.is_file():
                manifests[dataset] = json.loads(manifest.read_text())
        return dict(config=config, configs_sha256=digest.hexdigest(), options=list(options),
                    data=manifests, upstream=upstream)

    def pretrain(self, arm, seed):
        config = self.args.configs['pretrain'][arm]

        def produce(work_dir):
            ckpt = self.train(config, work_dir, [f'randomness.seed={seed}'])
            metrics = self.test(config, ckpt, work_dir)
            backbone = work_dir / 'backbone.pth'
            from fdrop_mm.transfer import extract_backbone
            extract_backbone(ckpt, backbone, meta=dict(arm=arm, seed=seed, config=config))
            return dict(config=config, checkpoint=str(ckpt), backbone=str(backbone),
                        metrics=metrics, files=[str(ckpt), str(backbone)])

        return self.stage(self.args.work_dir / f'seed{seed}' / f'pretrain_{arm}', produce,
                          self.stage_inputs(config, [f'randomness.seed={seed}']))

    def finetune(self, arm, seed, pretrain):
        backbone = pretrain and pretrain['backbone']
        config = self.args.configs['detection'][arm if arm != RANDOM_INIT else 'baseline']
        init = ('model.backbone.init_cfg=None' if backbone is None
                else f'model.backbone.init_cfg.checkpoint={backbone}')

        def produce(work_dir):
            ckpt = self.train(config, work_dir, [init, f'randomness.seed={seed}'])
            metrics = self.test(config, ckpt, work_dir, [init])
            return dict(config=config, checkpoint=str(ckpt), backbone=backbone, metrics=metrics,
                        files=[str(ckpt)])

        upstream = pretrain and pretrain['inputs']
        return self.stage(self.args.work_dir / f'seed{seed}' / f'detection_{arm}', produce,
                          self.stage_inputs(config, [init, f'randomness.seed={seed}'], upstream))

    def run(self):
        a = self.args
        if a.tiny:
            subprocess.run([sys.executable, TOOLS / 'make_tiny_data.py', '--out', a.data_root],
                           check=True, cwd=REPO)
        rows = []
        for seed in a.seeds:
            pretrained = {p: self.pretrain(p, seed) for p in sorted({PRETRAIN_OF[arm] for arm in a.arms})}
            for arm in a.arms:
                pre = pretrained[PRETRAIN_OF[arm]]
                det = self.finetune(arm, seed, pre)
                rows.append(result_row(arm, seed, pre, det))
            if a.random_init_floor:
                rows.append(result_row(RANDOM_INIT, seed, None, self.finetune(RANDOM_INIT, seed, None)))
        return write_tables(rows, a.work_dir, tiny=a.tiny)


def config_chain(config: Path) -> list:
    """``config`` and the files of this repository it inherits from through ``_base_``
    (package bases such as ``mmdet::...`` are pinned by the installed versions)."""
    chain, pending = [], [config.resolve()]
    while pending:
        path = pending.pop()
        if path in chain:
            continue
        chain.append(path)
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == '_base_' for t in node.targets):
                bases = node.value.elts if isinstance(node.value, (ast.List, ast.Tuple)) else [node.value]
                pending += [(path.parent / b.value).resolve() for b in bases
                            if isinstance(b, ast.Constant) and '::' not in b.value]
    return chain


def last_checkpoint(work_dir: Path) -> Path:
    """The checkpoint mmengine's CheckpointHook recorded last in work_dir."""
    pointer = work_dir / 'last_checkpoint'
    if not pointer.is_file():
        raise RuntimeError(f'training finished without a checkpoint: no {pointer}')
    ckpt = Path(pointer.read_text().strip())
    if not ckpt.is_file():
        raise RuntimeError(f'{pointer} names {ckpt}, which does not exist')
    return ckpt


def result_row(arm, seed, pretrain, detection) -> dict:
    det = detection['metrics']
    return dict(
        arm=arm, seed=seed,
        top1=pretrain['metrics'].get('accuracy/top1') if pretrain else None,
        top5=pretrain['metrics'].get('accuracy/top5') if pretrain else None,
        mAP=det['pascal_voc/mAP'],
        class_ap={k.split('AP50_', 1)[1]: v for k, v in det.items() if 'AP50_' in k},
        source_checkpoint=pretrain['checkpoint'] if pretrain else None,
        detector_checkpoint=detection['checkpoint'])


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return '–'
    if len(values) == 1:
        return f'{values[0]:.4g}'
    return f'{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}'


def write_tables(rows, work_dir: Path, tiny: bool) -> str:
    arms = list(dict.fromkeys(r['arm'] for r in rows))
    lines = ['# FocusedDropout pipeline results', '']
    if tiny:
        lines += [f'> {TINY_NOTE}', '']
    lines += ['## Summary (mean ± std over seeds)', '',
              '| arm | seeds | top-1 (%) | top-5 (%) | VOC07 mAP |', '|---|---|---|---|---|']
    for arm in arms:
        sel = [r for r in rows if r['arm'] == arm]
        lines.append(f"| {arm} | {len(sel)} | {mean_std([r['top1'] for r in sel])} | "
                     f"{mean_std([r['top5'] for r in sel])} | {mean_std([r['mAP'] for r in sel])} |")
    lines += ['', '## Runs', '', '| arm | seed | top-1 (%) | top-5 (%) | VOC07 mAP | source checkpoint |',
              '|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f"| {r['arm']} | {r['seed']} | {mean_std([r['top1']])} | {mean_std([r['top5']])} | "
                     f"{r['mAP']:.4f} | {r['source_checkpoint'] or '(random init)'} |")
    classes = list(rows[0]['class_ap'])
    lines += ['', '## Per-class AP at IoU 0.5 (mean over seeds)', '',
              '| class | ' + ' | '.join(arms) + ' |', '|---|' + '---|' * len(arms)]
    for name in classes:
        cells = [mean_std([r['class_ap'][name] for r in rows if r['arm'] == arm]) for arm in arms]
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    table = '\n'.join(lines) + '\n'
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / 'results.md').write_text(table)
    (work_dir / 'results.json').write_text(json.dumps(dict(tiny=tiny, rows=rows), indent=2))
    return table


def main(argv=None):
    args = parse_args(argv)
    table = Pipeline(args).run()
    print(table)
    print(f'[pipeline] wrote {args.work_dir / "results.md"} and {args.work_dir / "results.json"}')


if __name__ == '__main__':
    main()
