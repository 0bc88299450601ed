"""Extract and verify the ResNet backbone of an mmpretrain checkpoint for mmdet.

Usage::

    python tools/model_converters/extract_backbone.py SRC DST [--depth 50] [--meta arm=fd_mwd note=...]
                                                      [--allow-non-classifier-source]

Writes ``{'state_dict': {'backbone.*': tensor}, 'meta': {...}}`` to DST for
``init_cfg=dict(type='StrictPretrained', checkpoint=DST, prefix='backbone.')``.
A SRC that is not an mmpretrain ImageClassifier's (e.g. a fine-tuned detector) is
refused unless ``--allow-non-classifier-source``. See ``fdrop_mm.transfer.extract_backbone``.
"""
import argparse
import ast
import json

from fdrop_mm.cli import exit_on_bad_input, quiet_known_warnings
from fdrop_mm.transfer import extract_backbone


def meta_item(text: str):
    """``key=value``; the value is a Python literal if it parses as one (1, 0.5, True, (0.3, 0.6)), else a str."""
    key, sep, value = text.partition('=')
    if not sep or not key:
        raise argparse.ArgumentTypeError(f'expected key=value, got {text!r}')
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def main(argv=None):
    quiet_known_warnings()
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='mmpretrain ImageClassifier checkpoint (.pth)')
    parser.add_argument('dst', help='output backbone checkpoint (.pth)')
    parser.add_argument('--depth', type=int, default=50, help='mmdet ResNet depth to verify against (default 50)')
    parser.add_argument('--meta', nargs='+', type=meta_item, default=[], metavar='KEY=VALUE',
                        help='extra meta entries, e.g. arm=fd_mwd')
    parser.add_argument('--allow-non-classifier-source', action='store_true',
                        help='extract from a checkpoint trained as another model than an mmpretrain '
                        'ImageClassifier (e.g. a fine-tuned detector); its meta records the source model')
    args = parser.parse_args(argv)
    written = exit_on_bad_input(extract_backbone, args.src, args.dst, depth=args.depth, meta=dict(args.meta),
                                allow_non_classifier_source=args.allow_non_classifier_source)
    print(f'wrote {args.dst}: {len(written["state_dict"])} tensors (backbone.*, mmdet ResNet-{args.depth})')
    print(json.dumps(written['meta'], indent=2, default=str))


if __name__ == '__main__':
    main()
