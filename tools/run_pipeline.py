"""The whole experiment of paper §5.3 in one command, for each arm and seed: ResNet-50
pretraining (mmpretrain) -> backbone extraction -> RetinaNet fine-tune on VOC 07+12 (mmdet) ->
VOC2007 test, then a comparison table (markdown and JSON); see fdrop_mm.experiments.pipeline.

Stages whose outputs are complete are skipped when the command is rerun. ``--tiny`` runs the
CPU smoke configs on data from fdrop_mm.testing.tiny_data (generated if absent).

    python tools/run_pipeline.py --tiny                       # one CPU machine, minutes
    python tools/run_pipeline.py --launcher pytorch --gpus 8  # the real run, 8 GPUs
    python tools/run_pipeline.py --launcher slurm --gpus 16 --partition p  # slurm
"""
import argparse

from fdrop_mm.experiments.launcher import LAUNCHERS, Launcher
from fdrop_mm.experiments.pipeline import ARMS, run_pipeline


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--tiny', action='store_true', help='CPU smoke configs on generated tiny data')
    parser.add_argument('--work-dir', default=None,
                        help='outputs (default work_dirs/pipeline or work_dirs/pipeline_tiny)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--arms', nargs='+', default=['baseline', 'fd'], choices=ARMS,
                        help='detection arms; fd+fd-finetune also uses FD while fine-tuning')
    parser.add_argument('--random-init-floor', action=argparse.BooleanOptionalAction, default=None,
                        help='also fine-tune from a random backbone (default: on with --tiny)')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none')
    parser.add_argument('--gpus', type=int, default=1, help='processes (GPUs) per training run')
    parser.add_argument('--partition', help='slurm partition (with --launcher slurm)')
    parser.add_argument('--data-root', default=None,
                        help='folder holding imagenet/ and VOCdevkit/ (default data, or data/tiny)')
    args = parser.parse_args(argv)
    try:
        args.launcher = Launcher(args.launcher, args.gpus, args.partition)
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv=None):
    args = parse_args(argv)
    run_pipeline(tiny=args.tiny, work_dir=args.work_dir, data_root=args.data_root, seeds=args.seeds,
                 arms=args.arms, random_init_floor=args.random_init_floor, launcher=args.launcher)


if __name__ == '__main__':
    main()
