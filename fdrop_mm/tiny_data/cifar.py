"""CIFAR (``<out>/cifar10/cifar-10-batches-py``: ``data_batch_1..5``, ``test_batch``,
``batches.meta``; ``<out>/cifar100/cifar-100-python``: ``train``, ``test``, ``meta``) as the
published python pickles: dicts with the same keys, ``data`` uint8 (N, 3072) rows of R, G, B
planes, the real class names; CIFAR-100's coarse labels are synthetic (fine // 5). Written
with numpy 2, whose pickles need numpy >= 1.26 to load. The md5 sums differ from the
published files, so mmpretrain's CIFAR10/CIFAR100 refuse them: load them with
``fdrop_mm.datasets.classification``'s ``CheckedCIFAR10``/``CheckedCIFAR100`` and
``verify_md5=False``, which checks their structure instead.
"""
from pathlib import Path
import pickle

import numpy as np

from .drawing import noisy_pixels, object_image, split_rng
from .manifest import TinyDataError, _materialize, _require_at_least

CIFAR_SIZE = 32
CIFAR_FORMATS = {
    # folder, training batch files, test file, meta file, label key, meta key of class names
    'cifar10': dict(folder='cifar-10-batches-py', num_classes=10, label_key='labels',
                    train_files=[f'data_batch_{n}' for n in range(1, 6)], test_file='test_batch',
                    meta_file='batches.meta', names_key='label_names'),
    'cifar100': dict(folder='cifar-100-python', num_classes=100, label_key='fine_labels',
                     train_files=['train'], test_file='test', meta_file='meta',
                     names_key='fine_label_names'),
}
CIFAR100_COARSE = 20  # synthetic superclasses: coarse label = fine label // 5


def cifar_class_names(dataset):
    """The real CIFAR class names in label order (as mmpretrain's CIFAR datasets list them)."""
    from mmpretrain.datasets.categories import CIFAR10_CATEGORIES, CIFAR100_CATEGORIES
    return list(CIFAR10_CATEGORIES if dataset == 'cifar10' else CIFAR100_CATEGORIES)


def _cifar_batch(dataset, rng, labels, names, batch_label):
    """One batch dict with the keys, types and row layout of the published pickles: ``data``
    is uint8 (N, 3072), each row the red, green then blue 32x32 planes."""
    images = [noisy_pixels(object_image(rng, label, CIFAR_SIZE)[0], rng) for label in labels]
    data = np.stack([image.transpose(2, 0, 1).reshape(-1) for image in images])
    filenames = [f'{names[label]}_s_{int(rng.integers(1, 10 ** 6)):06d}.png' for label in labels]
    labels = [int(label) for label in labels]
    if dataset == 'cifar10':
        return {'batch_label': batch_label, 'labels': labels, 'data': data, 'filenames': filenames}
    return {'filenames': filenames, 'batch_label': batch_label, 'fine_labels': labels,
            'coarse_labels': [label // 5 for label in labels], 'data': data}


def _write_pickle(path, obj):
    with open(path, 'wb') as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar(root, dataset, seed, train_per_class, test_per_class):
    """Write ``<root>/cifar-10-batches-py`` or ``<root>/cifar-100-python``."""
    spec = CIFAR_FORMATS[dataset]
    folder = root / spec['folder']
    folder.mkdir(parents=True)
    names = cifar_class_names(dataset)
    classes = np.arange(spec['num_classes'])
    rng = split_rng(seed, f'{dataset}/train')
    train_labels = rng.permutation(np.repeat(classes, train_per_class))
    chunks = np.array_split(train_labels, len(spec['train_files']))
    for n, (filename, chunk) in enumerate(zip(spec['train_files'], chunks), start=1):
        batch_label = f'training batch {n} of {len(chunks)}'
        _write_pickle(folder / filename, _cifar_batch(dataset, rng, chunk, names, batch_label))
    rng = split_rng(seed, f'{dataset}/test')
    test_labels = rng.permutation(np.repeat(classes, test_per_class))
    _write_pickle(folder / spec['test_file'],
                  _cifar_batch(dataset, rng, test_labels, names, 'testing batch 1 of 1'))
    if dataset == 'cifar10':
        meta = {'num_cases_per_batch': len(chunks[0]), 'label_names': names,
                'num_vis': 3 * CIFAR_SIZE * CIFAR_SIZE}
    else:
        meta = {'fine_label_names': names,
                'coarse_label_names': [f'superclass_{k:02d}' for k in range(CIFAR100_COARSE)]}
    _write_pickle(folder / spec['meta_file'], meta)


def make_cifar(root, dataset, *, seed=0, train_per_class=20, test_per_class=10, force=False):
    """Make the tiny CIFAR-10 or CIFAR-100 (``dataset``) at ``root``; False if already complete."""
    if dataset not in CIFAR_FORMATS:
        raise TinyDataError(f'dataset must be one of {sorted(CIFAR_FORMATS)}, got {dataset!r}')
    _require_at_least(0, seed=seed)
    _require_at_least(1, train_per_class=train_per_class, test_per_class=test_per_class)
    params = dict(dataset=dataset, seed=seed, train_per_class=train_per_class,
                  test_per_class=test_per_class)
    return _materialize(Path(root), params, force, lambda tmp: write_cifar(
        tmp, dataset, seed, train_per_class, test_per_class))
