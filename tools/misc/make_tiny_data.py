"""Write deterministic tiny datasets in their real formats (see fdrop_mm.tiny_data)."""
import argparse
from pathlib import Path

from fdrop_mm.cli import exit_on_bad_input, quiet_known_warnings
from fdrop_mm.tiny_data import DATASETS, DEFAULT_SIZES, generate


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Write deterministic tiny ImageNet (<out>/imagenet, for mmpretrain), '
                    'VOCdevkit (<out>/VOCdevkit, for mmdet), CIFAR-10/100 (<out>/cifar10, '
                    '<out>/cifar100) and Tiny ImageNet (<out>/tiny-imagenet-200) datasets in '
                    'their real formats.')
    parser.add_argument('--out', required=True, type=Path, help='output directory')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    parser.add_argument('--only', nargs='+', choices=DATASETS, default=['imagenet', 'voc'],
                        metavar='DATASET',
                        help=f'the datasets to make, of {", ".join(DATASETS)} (default: imagenet '
                             'voc, what the pretrain-and-detect pipeline needs)')
    parser.add_argument('--force', action='store_true',
                        help='replace a dataset this tool made with other parameters')

    def size(group, name, help, **kwargs):
        group.add_argument(f'--{name.replace("_", "-")}', type=int, default=DEFAULT_SIZES[name],
                           help=help, **kwargs)

    imagenet = parser.add_argument_group('ImageNet')
    size(imagenet, 'num_classes',
         'default 20: the 20 VOC classes\' drawings, as ImageNet covers VOC\'s classes')
    size(imagenet, 'imagenet_train_per_class', 'default 30')
    size(imagenet, 'imagenet_val_per_class', 'default 10')
    size(imagenet, 'imagenet_size', 'square image side in pixels (default 64)')
    cifar = parser.add_argument_group('CIFAR-10 and CIFAR-100 (32x32 images)')
    size(cifar, 'cifar10_train_per_class', 'default 20')
    size(cifar, 'cifar10_test_per_class', 'default 10')
    size(cifar, 'cifar100_train_per_class', 'default 5')
    size(cifar, 'cifar100_test_per_class', 'default 2')
    tin = parser.add_argument_group('Tiny ImageNet')
    size(tin, 'tinyimagenet_classes', 'default 10')
    size(tin, 'tinyimagenet_train_per_class', 'default 10')
    size(tin, 'tinyimagenet_val_per_class',
         'also the size of the unlabelled test split (default 4)')
    size(tin, 'tinyimagenet_size', 'square image side in pixels (default 64)')
    voc = parser.add_argument_group('VOC')
    size(voc, 'voc07_trainval', 'default 60')
    size(voc, 'voc07_test', 'default 100')
    size(voc, 'voc12_trainval', 'default 40')
    size(voc, 'voc_size', 'image width and height in pixels (default 192 160)',
         nargs=2, metavar=('W', 'H'))
    return parser.parse_args(argv)


def main(argv=None):
    quiet_known_warnings()
    args = vars(parse_args(argv))
    exit_on_bad_input(generate, args.pop('out'), only=args.pop('only'), seed=args.pop('seed'),
                      force=args.pop('force'), **args)


if __name__ == '__main__':
    main()
