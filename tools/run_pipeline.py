"""The whole experiment of paper §5.3 in one command, for each arm and seed: ResNet-50
pretraining (mmpretrain) -> backbone extraction -> RetinaNet fine-tune on VOC 07+12 (mmdet) ->
VOC2007 test, then a comparison table (markdown and JSON); see fdrop_mm.experiments.pipeline.

Stages whose outputs are complete are skipped when the command is rerun. ``--tiny`` runs the
CPU smoke configs on data from fdrop_mm.tiny_data (generated if absent). While stages run
locally, their progress (epoch, iteration, loss, ETA) and the job's ETA are shown, then a table of
their wall times (fdrop_mm.experiments.progress); ``--pretrained`` tests and transfers a published
checkpoint instead of training that arm (fdrop_mm.experiments.published).

    python tools/run_pipeline.py --tiny                       # one CPU machine, minutes
    python tools/run_pipeline.py --tiny --record docs/results/tiny_seed0.md  # the README's table
    python tools/run_pipeline.py --launcher pytorch --gpus 8  # the real run, 8 GPUs
    python tools/run_pipeline.py --launcher slurm --gpus 8 --partition p --time 3-00:00:00  # slurm jobs
    python tools/run_pipeline.py --launcher slurm --gpus 8 --partition p --dry-run  # their scripts
    python tools/run_pipeline.py --launcher pytorch --gpus 8 --pretrained \
        baseline=https://download.openmmlab.com/mmclassification/v0/resnet/resnet50_8xb32_in1k_20210831-ea4938fc.pth
"""
import argparse
import shlex
import sys

from fdrop_mm.cli import quiet_known_warnings
from fdrop_mm.experiments.command_line import add_launch_arguments, launch_settings
from fdrop_mm.experiments.pipeline import ARMS, PRETRAIN_CONFIGS, run_pipeline
from fdrop_mm.experiments.published import parse_pretrained


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
    parser.add_argument('--pretrained', nargs='+', default=[], metavar='ARM=PATH_OR_URL',
                        help='use this published checkpoint (an mmpretrain ResNet-50 ImageClassifier\'s) '
                        'for the baseline or fd pretraining instead of training it: it is tested on '
                        'the val split and its backbone transferred')
    parser.add_argument('--stage', help='only this stage, e.g. seed0/pretrain_fd or results (what a '
                        'slurm job runs; the stages it needs must be complete)')
    parser.add_argument('--record', metavar='FILE', help='also write the table to FILE with the machine, '
                        'commit, date and command that made it (docs/results/tiny_seed0.md is this with '
                        '--tiny)')
    add_launch_arguments(parser)
    parser.add_argument('--data-root', default=None,
                        help='folder holding imagenet/ and VOCdevkit/ (default data, or data/tiny)')
    args = parser.parse_args(argv)
    try:
        if args.dry_run and args.launcher != 'slurm':
            raise ValueError('--dry-run: only with --launcher slurm (it prints the sbatch scripts)')
        args.launcher, args.slurm = launch_settings(args)
        args.pretrained = parse_pretrained(args.pretrained, list(PRETRAIN_CONFIGS))
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv=None):
    quiet_known_warnings()
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    run_pipeline(tiny=args.tiny, work_dir=args.work_dir, data_root=args.data_root, seeds=args.seeds,
                 arms=args.arms, random_init_floor=args.random_init_floor, launcher=args.launcher,
                 stage=args.stage, pretrained=args.pretrained, slurm=args.slurm, dry_run=args.dry_run,
                 record=args.record, command=shlex.join(['python', 'tools/run_pipeline.py', *argv]))


if __name__ == '__main__':
    main()
