"""Tiny ImageNet (``<out>/tiny-imagenet-200``, for ``fdrop_mm.datasets.classification.TinyImageNet``)::

    wnids.txt (unsorted), words.txt ("<wnid>\t<name>", with two extra WordNet roots)
    train/<wnid>/images/<wnid>_<n>.JPEG   train/<wnid>/<wnid>_boxes.txt
    val/images/val_<n>.JPEG               val/val_annotations.txt
                                          "<file>\t<wnid>\t<x0>\t<y0>\t<x1>\t<y1>"
    test/images/test_<n>.JPEG             (no labels, as published)

``--tinyimagenet-size`` pixels square (default 64, the real size); the first training image
of the first class is greyscale, as some published ones are.
"""
import numpy as np

from .drawing import object_image, save_jpeg, split_rng, write_lines
from .imagenet import _make_labelled_images, imagenet_class_names, imagenet_wnids

WORDNET_ROOTS = ('n00001740\tentity', 'n00001930\tphysical entity')  # words.txt's first lines


def _box_fields(box):
    """Tiny ImageNet's inclusive pixel box "x0 y0 x1 y1" fields."""
    x0, y0, width, height = box
    return [x0, y0, x0 + width - 1, y0 + height - 1]


def write_tinyimagenet(root, seed, num_classes, train_per_class, val_per_class, image_size):
    """Write Tiny ImageNet-200's layout under the (new, empty) directory ``root``."""
    wnids = imagenet_wnids(num_classes)
    rng = split_rng(seed, 'tinyimagenet/train')
    write_lines(root / 'wnids.txt', rng.permutation(wnids).tolist())  # unsorted, as published
    write_lines(root / 'words.txt', [*WORDNET_ROOTS, *(
        f'{wnid}\t{name}' for wnid, name in zip(wnids, imagenet_class_names(num_classes)))])
    for label, wnid in enumerate(wnids):
        boxes = []
        for n in range(train_per_class):
            filename = f'{wnid}_{n}.JPEG'
            canvas, box = object_image(rng, label, image_size)
            save_jpeg(canvas, rng, root / 'train' / wnid / 'images' / filename,
                      grayscale=label == 0 and n == 0)  # like the published set's grey images
            boxes.append('\t'.join(map(str, [filename, *_box_fields(box)])))
        write_lines(root / 'train' / wnid / f'{wnid}_boxes.txt', boxes)
    for split in ('val', 'test'):
        rng = split_rng(seed, f'tinyimagenet/{split}')
        labels = rng.permutation(np.repeat(np.arange(num_classes), val_per_class)).tolist()
        annotations = []
        for n, label in enumerate(labels):
            filename = f'{split}_{n}.JPEG'
            canvas, box = object_image(rng, label, image_size)
            save_jpeg(canvas, rng, root / split / 'images' / filename)
            annotations.append('\t'.join(map(str, [filename, wnids[label], *_box_fields(box)])))
        if split == 'val':  # the test split is published without labels
            write_lines(root / 'val' / 'val_annotations.txt', annotations)


def make_tinyimagenet(root, *, seed=0, num_classes=10, train_per_class=10, val_per_class=4,
                      image_size=64, force=False):
    """Make the tiny Tiny ImageNet at ``root``; return False if it was already complete."""
    return _make_labelled_images(root, 'tinyimagenet', 'Tiny ImageNet', write_tinyimagenet, seed,
                                 num_classes, train_per_class, val_per_class, image_size, force)
