"""The generated CIFAR-10/100 and Tiny ImageNet sets in their published formats, loaded by
mmpretrain's CIFAR classes (through fdrop_mm's checked subclasses) and fdrop_mm's TinyImageNet."""
import pickle
import re
import shutil
from collections import Counter

import numpy as np
import pytest
from mmengine.config import Config
from mmpretrain.registry import DATASETS

from fdrop_mm.datasets.classification import CheckedCIFAR100
from fdrop_mm.tiny_data import generate
from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures('mmpretrain_scope')

CIFAR10_TRAIN, CIFAR10_TEST, CIFAR100_TRAIN, CIFAR100_TEST = 20, 10, 5, 2
TIN_CLASSES, TIN_TRAIN, TIN_VAL, TIN_SIZE = 10, 10, 4, 64
LOAD = [dict(type='LoadImageFromFile')]


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp('classification_data')
    generate(out, only=['cifar10', 'cifar100', 'tinyimagenet'])
    return out


def _unpickle(path):
    with open(path, 'rb') as f:
        return pickle.load(f, encoding='latin1')


@pytest.mark.parametrize('dataset, folder, files, label_key, keys, meta, meta_keys', [
    ('cifar10', 'cifar-10-batches-py', [f'data_batch_{n}' for n in range(1, 6)] + ['test_batch'],
     'labels', {'batch_label', 'labels', 'data', 'filenames'}, 'batches.meta',
     {'num_cases_per_batch', 'label_names', 'num_vis'}),
    ('cifar100', 'cifar-100-python', ['train', 'test'], 'fine_labels',
     {'filenames', 'batch_label', 'fine_labels', 'coarse_labels', 'data'}, 'meta',
     {'fine_label_names', 'coarse_label_names'}),
])
def test_cifar_files_have_the_published_layout(tiny, dataset, folder, files, label_key, keys,
                                               meta, meta_keys):
    root = tiny / dataset / folder
    assert sorted(p.name for p in root.iterdir()) == sorted(files + [meta])
    assert set(_unpickle(root / meta)) == meta_keys
    for name in files:
        batch = _unpickle(root / name)
        assert set(batch) == keys
        assert batch['data'].dtype == np.uint8 and batch['data'].shape[1] == 3072
        assert len(batch[label_key]) == len(batch['data']) == len(batch['filenames'])


@pytest.mark.parametrize('type_, dataset, folder, num_classes, train, test', [
    ('CheckedCIFAR10', 'cifar10', 'cifar-10-batches-py', 10, CIFAR10_TRAIN, CIFAR10_TEST),
    ('CheckedCIFAR100', 'cifar100', 'cifar-100-python', 100, CIFAR100_TRAIN, CIFAR100_TEST),
])
def test_cifar_loads_through_mmpretrain_with_structure_check(tiny, type_, dataset, folder,
                                                             num_classes, train, test):
    root = tiny / dataset
    for split, per_class in (('train', train), ('test', test)):
        loaded = DATASETS.build(dict(type=type_, data_root=str(root), split=split,
                                     verify_md5=False))
        assert Counter(loaded.get_gt_labels().tolist()) == {c: per_class for c in range(num_classes)}
    # mmpretrain's row layout: the first image is the first row's R, G, B planes, as HWC
    first_file = 'data_batch_1' if dataset == 'cifar10' else 'train'
    row = _unpickle(root / folder / first_file)['data'][0]
    train_set = DATASETS.build(dict(type=type_, data_root=str(root), split='train',
                                    verify_md5=False))
    np.testing.assert_array_equal(train_set[0]['img'], row.reshape(3, 32, 32).transpose(1, 2, 0))
    # The default, md5 check, refuses the generated files naming one; mmpretrain's own class
    # only says it cannot find the dataset.
    with pytest.raises(RuntimeError, match=f'{root / folder}/.* does not have the md5 sum'):
        DATASETS.build(dict(type=type_, data_root=str(root), download=False))
    with pytest.raises(RuntimeError, match='Cannot find'):
        DATASETS.build(dict(type=type_.replace('Checked', ''), data_root=str(root), download=False))


def test_cifar_structure_errors_name_the_file(tiny, tmp_path):
    root = tmp_path / 'cifar10'
    shutil.copytree(tiny / 'cifar10', root)
    batch_path = root / 'cifar-10-batches-py' / 'data_batch_3'
    batch = _unpickle(batch_path)

    def build():
        return DATASETS.build(dict(type='CheckedCIFAR10', data_root=str(root), verify_md5=False))

    for broken, message in (
            (dict(batch, labels=[10] + batch['labels'][1:]), '"labels" holds 1 values outside 0..9'),
            (dict(batch, data=batch['data'][:, :100]), r'"data" must be .* \(N, 3072\)'),
            (dict(batch, labels=batch['labels'][1:]), r'"labels" must be a list of')):
        with open(batch_path, 'wb') as f:
            pickle.dump(broken, f, protocol=2)
        with pytest.raises(ValueError, match=f'{batch_path}: {message}'):
            build()
    batch_path.write_bytes(b'not a pickle')
    with pytest.raises(ValueError, match=f'{batch_path}: not a CIFAR python pickle'):
        build()
    batch_path.unlink()
    with pytest.raises(FileNotFoundError, match=f'{batch_path} does not exist'):
        build()


def test_tinyimagenet_loads_with_words_and_sorted_wnids(tiny):
    root = tiny / 'tiny-imagenet-200'
    wnids = (root / 'wnids.txt').read_text().split()
    words = dict(line.split('\t') for line in (root / 'words.txt').read_text().splitlines())
    assert wnids != sorted(wnids) and len(words) > len(wnids)  # as published
    train = DATASETS.build(dict(type='TinyImageNet', data_root=str(root), split='train',
                                pipeline=LOAD))
    val = DATASETS.build(dict(type='TinyImageNet', data_root=str(root), split='val',
                              pipeline=LOAD))
    assert train.CLASSES == tuple(words[w] for w in sorted(wnids)) == val.CLASSES
    assert Counter(train.get_gt_labels().tolist()) == {c: TIN_TRAIN for c in range(TIN_CLASSES)}
    assert Counter(val.get_gt_labels().tolist()) == {c: TIN_VAL for c in range(TIN_CLASSES)}
    annotations = [line.split('\t') for line in
                   (root / 'val' / 'val_annotations.txt').read_text().splitlines()]
    for index in (0, len(val) - 1):
        filename, wnid = annotations[index][:2]
        sample = val[index]
        assert sample['img_path'].endswith(f'val/images/{filename}')
        assert sample['gt_label'] == sorted(wnids).index(wnid)
    greyscale = train[0]  # stored single-channel, loaded as 3 channels like the others
    assert greyscale['img'].shape == (TIN_SIZE, TIN_SIZE, 3)
    assert greyscale['img_path'].endswith(f'train/{sorted(wnids)[0]}/images/{sorted(wnids)[0]}_0.JPEG')


def _edit(path, change):
    path.write_text(change(path.read_text()))


def _tinyimagenet_case(root, case):
    """Break a copy of Tiny ImageNet at ``root``; return the expected error and message."""
    annotations = root / 'val' / 'val_annotations.txt'
    first_wnid = sorted((root / 'wnids.txt').read_text().split())[0]
    if case == 'missing wnids.txt':
        (root / 'wnids.txt').unlink()
        return FileNotFoundError, f'{root / "wnids.txt"} does not exist', 'train'
    if case == 'malformed wnids line':
        _edit(root / 'wnids.txt', lambda text: text + 'goldfish\n')
        return ValueError, rf'{root / "wnids.txt"}:{TIN_CLASSES + 1}: malformed line', 'train'
    if case == 'malformed words line':
        _edit(root / 'words.txt', lambda text: text.replace('\t', ' ', 1))
        return ValueError, rf'{root / "words.txt"}:1: malformed line', 'train'
    if case == 'malformed annotation line':
        _edit(annotations, lambda text: text.replace('\t', ' ', 1))
        return ValueError, rf'{annotations}:1: malformed line', 'val'
    if case == 'unknown wnid':
        _edit(annotations, lambda text: text.replace('\tn0', '\tn9', 1))
        return ValueError, rf"{annotations}:1: wnid 'n9.*' is not in wnids.txt", 'val'
    if case == 'missing image':
        filename = annotations.read_text().split('\t', 1)[0]
        (root / 'val' / 'images' / filename).unlink()
        return FileNotFoundError, f'{annotations}:1: image .*{filename} does not exist', 'val'
    if case == 'unknown train folder':
        (root / 'train' / 'n99999999').mkdir()
        message = rf"{root / 'train'} has folders of wnids not in wnids.txt: \['n99999999'\]"
        return ValueError, message, 'train'
    if case == 'class without images':
        for image in (root / 'train' / first_wnid / 'images').iterdir():
            image.unlink()
        return ValueError, f'{root / "train" / first_wnid / "images"} holds no .JPEG images', 'train'
    if case == 'empty split':
        annotations.write_text('')
        return ValueError, f'the val split under {root} has no images', 'val'
    raise AssertionError(case)


@pytest.mark.parametrize('case', ['missing wnids.txt', 'malformed wnids line', 'malformed words line',
                                  'malformed annotation line', 'unknown wnid', 'missing image',
                                  'unknown train folder', 'class without images', 'empty split'])
def test_tinyimagenet_errors_name_the_file(tiny, tmp_path, case):
    root = tmp_path / 'tiny-imagenet-200'
    shutil.copytree(tiny / 'tiny-imagenet-200', root)
    error, message, split = _tinyimagenet_case(root, case)
    with pytest.raises(error, match=message):
        DATASETS.build(dict(type='TinyImageNet', data_root=str(root), split=split))


def test_generator_is_deterministic(tmp_path):
    """(That the default datasets stay imagenet and voc: test_tiny_data's CLI test.)"""
    for name in ('a', 'b'):
        generate(tmp_path / name, only=['cifar100'], cifar100_train_per_class=1, cifar100_test_per_class=1)
    files = sorted(p.relative_to(tmp_path / 'a') for p in (tmp_path / 'a').rglob('*') if p.is_file())
    assert files and all((tmp_path / 'a' / f).read_bytes() == (tmp_path / 'b' / f).read_bytes()
                         for f in files)


CIFAR100_URL = 'https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz'


@pytest.mark.parametrize('root_exists', [False, True])
def test_cifar_config_without_the_data_names_the_files_and_downloads_nothing(tmp_path, monkeypatch,
                                                                            root_exists):
    root = tmp_path / 'data' / 'cifar100'
    if root_exists:
        root.mkdir(parents=True)
    monkeypatch.setenv('CIFAR100_ROOT', str(root))
    cfg = Config.fromfile(str(REPO / 'configs/cifar/resnet20_1xb128_cifar100.py'))
    message = (rf'CheckedCIFAR100: {root}/cifar-100-python/train does not exist\. Expected '
               rf'{root}/cifar-100-python/ holding the published files \(train, test, meta\): download '
               rf'{re.escape(CIFAR100_URL)} \(md5 eb9058c3a382ffc7106e4002c42a8d85\) and extract it in {root}/, '
               r'or set download=True in the dataset config')
    with pytest.raises(RuntimeError, match=message):
        DATASETS.build(cfg.train_dataloader.dataset)
    if root_exists:
        assert root.is_dir() and not any(root.iterdir())
    else:
        assert not (tmp_path / 'data').exists()


@pytest.mark.parametrize('root_exists', [False, True])
def test_failed_download_says_so_and_leaves_nothing_behind(tmp_path, root_exists):
    """``download=True`` asked for explicitly, and the archive cannot be fetched (a URL that does not
    resolve to a file: the same urllib path as an unreachable host)."""
    unreachable = (tmp_path / 'mirror' / 'cifar-100-python.tar.gz').as_uri()
    unreachable_cifar = type('UnreachableCIFAR100', (CheckedCIFAR100, ), dict(url=unreachable))
    root = tmp_path / 'data' / 'cifar100'
    if root_exists:
        root.mkdir(parents=True)
    written = [str(tmp_path / 'data')]
    removed = 'it wrote nothing' if root_exists else re.escape(f'removed what it wrote: {written}')
    with pytest.raises(RuntimeError, match=rf'download=True, but fetching {re.escape(unreachable)} into {root}/ '
                                           rf'failed \(URLError: .*\); {removed}\. Expected .* download'):
        unreachable_cifar(data_root=str(root), download=True)
    if root_exists:
        assert root.is_dir() and not any(root.iterdir())
    else:
        assert not (tmp_path / 'data').exists()
