"""Train with an mmpretrain, mmdet, mmseg or mmaction2 config: tools/train.py as in mmpretrain 1.2,
mmdet 3.3, mmsegmentation 1.2 and mmaction2 1.2 (the config's default_scope picks the package).

mmdet's arguments (--amp, --auto-scale-lr, --resume [CHECKPOINT], --cfg-options, --launcher),
which take mmseg's too (its --resume has no path), plus --allow-partial-load; the flags only
mmpretrain's or mmaction2's have (--no-validate, --seed, ...) are --cfg-options here (e.g.
``--cfg-options randomness.seed=1``). ``--launcher pytorch`` works without GPUs
(``tools/dist_train.sh CONFIG 2`` runs on CPUs), and a ``load_from`` checkpoint (not a resume)
must fit the model exactly: see fdrop_mm.apis.
"""
import argparse

from fdrop_mm.apis import add_launch_args, parse_launch_args, train
from fdrop_mm.cli import quiet_known_warnings


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train with an mmpretrain, mmdet, mmseg or mmaction2 config')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', help='enable automatic-mixed-precision training')
    parser.add_argument('--auto-scale-lr', action='store_true', help='enable automatically scaling LR')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or without a path from the latest '
                        'checkpoint in the work directory')
    add_launch_args(parser)
    return parse_launch_args(parser, argv)


def main(argv=None):
    quiet_known_warnings()
    args = parse_args(argv)
    train(args.config, work_dir=args.work_dir, cfg_options=args.cfg_options, launcher=args.launcher,
          amp=args.amp, auto_scale_lr=args.auto_scale_lr, resume=args.resume,
          allow_partial_load=args.allow_partial_load)


if __name__ == '__main__':
    main()
