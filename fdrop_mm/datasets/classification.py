"""mmpretrain dataset adapters for the paper's classification experiments (§5.1): CIFAR-10/100
with an explicit alternative to the md5 check, Tiny ImageNet-200 in its distributed layout, and
ImageNet that refuses an empty split (§5.3's pretraining).

Imported by ``import fdrop_mm`` when mmpretrain is installed; registers in mmpretrain's DATASETS.
"""
import os
import os.path as osp
import pickle
import re
import shutil
from pathlib import Path
from typing import List, Optional

import numpy as np
from mmengine.logging import MMLogger
from mmpretrain.datasets import CIFAR10, CIFAR100, BaseDataset, ImageNet
from mmpretrain.datasets.utils import check_md5, download_and_extract_archive
from mmpretrain.registry import DATASETS

CIFAR_IMAGE_VALUES = 3 * 32 * 32


def _topmost_missing(path: str) -> Optional[str]:
    """The outermost folder of ``path`` that does not exist (``path`` itself at most); None if it exists."""
    path, missing = osp.abspath(path), None
    while not osp.exists(path):
        path, missing = osp.dirname(path), path
    return missing


class _CheckedCIFAR:
    """mmpretrain's CIFAR loader with two explicit integrity modes and no download by default.

    ``verify_md5=True`` (default): mmpretrain's md5 check of every file. Where mmpretrain's
    classes report only "cannot find the dataset", or (their default ``download=True``) try
    to fetch the archive, a missing or altered file is named, with the files expected and the
    archive's URL and md5 sum. Only an explicit ``download=True`` in the dataset config fetches
    the archive (mmpretrain's download); if that fails, the error says so, and the folders and
    archive it created are removed.

    ``verify_md5=False``, for data that is not the published files (e.g. the tiny sets of
    ``fdrop_mm.tiny_data``): md5 sums are not checked, and the log says so. Instead
    every batch file must unpickle to a dict whose ``data`` is uint8 (N, 3072) with N
    integer labels in range, and the meta file must list the dataset's class names; a
    violation raises an error naming the file and the field.
    """

    label_key = 'labels'

    def __init__(self, *args, verify_md5: bool = True, download: bool = False, **kwargs):
        self.verify_md5 = verify_md5
        self._structure_checked = False
        super().__init__(*args, download=download, **kwargs)

    def _path(self, filename: str) -> str:
        return osp.join(self.data_prefix['root'], self.base_folder, filename)

    def _check_integrity(self) -> bool:
        if not self.verify_md5:
            self._check_structure()
            return True
        problem = self._md5_problem()
        if problem and self.download:
            self._download()
            problem = self._md5_problem()
        if problem:
            offer = '' if self.download else ', or set download=True in the dataset config to fetch it'
            raise RuntimeError(f'{type(self).__name__}: {problem}. {self._how_to_get()}{offer}; '
                               'verify_md5=False for data that is not the published files (its '
                               'structure is then checked instead)')
        return True

    def _md5_problem(self) -> Optional[str]:
        for filename, md5 in self._published_files():
            path = self._path(filename)
            if not osp.isfile(path):
                return f'{path} does not exist'
            if not check_md5(path, md5):
                return f'{path} does not have the md5 sum {md5} of the published file'
        return None

    def _published_files(self) -> List[list]:
        return self.train_list + self.test_list + [[self.meta['filename'], self.meta['md5']]]

    def _how_to_get(self) -> str:
        files = ', '.join(filename for filename, _ in self._published_files())
        return (f'Expected {self._path("")} holding the published files ({files}): download '
                f'{self.url} (md5 {self.tgz_md5}) and extract it in {self.data_prefix["root"]}')

    def _download(self) -> None:
        """mmpretrain's download and extraction of the archive into the data root; if it fails,
        the folders and files it created are removed and the error names the URL and the root."""
        root = self.data_prefix['root']
        missing_root = _topmost_missing(root)
        new_paths = [missing_root] if missing_root else [
            p for p in (osp.join(root, self.filename), self._path('')) if not osp.exists(p)]
        try:
            download_and_extract_archive(self.url, root, filename=self.filename, md5=self.tgz_md5)
        except Exception as error:  # urllib, tarfile and md5 failures raise many types
            written = [p for p in new_paths if osp.exists(p)]
            for path in written:
                if osp.isdir(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)
            raise RuntimeError(
                f'{type(self).__name__}: download=True, but fetching {self.url} into {root} failed '
                f'({type(error).__name__}: {error}); '
                + (f'removed what it wrote: {written}' if written else 'it wrote nothing')
                + f'. {self._how_to_get()}') from error

    def _load_pickle(self, filename: str) -> dict:
        path = self._path(filename)
        if not osp.isfile(path):
            raise FileNotFoundError(f'{type(self).__name__}: {path} does not exist')
        try:
            with open(path, 'rb') as f:
                entry = pickle.load(f, encoding='latin1')
        except Exception as error:  # any unpickling failure means a corrupt file
            raise ValueError(f'{path}: not a CIFAR python pickle ({error})') from error
        if not isinstance(entry, dict):
            raise ValueError(f'{path}: expected a pickled dict, got {type(entry).__name__}')
        return entry

    def _check_structure(self) -> None:
        if self._structure_checked:
            return
        meta_path = self._path(self.meta['filename'])
        names = self._load_pickle(self.meta['filename']).get(self.meta['key'])
        if list(names or ()) != list(self.CLASSES):
            raise ValueError(f'{meta_path}: {self.meta["key"]} must list the {len(self.CLASSES)} '
                             f'classes of {type(self).__name__} in order, got {names!r}')
        files = [name for name, _ in self.train_list + self.test_list]
        for filename in files:
            path, entry = self._path(filename), self._load_pickle(filename)
            data, labels = entry.get('data'), entry.get(self.label_key)
            if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
                    and data.shape[1] == CIFAR_IMAGE_VALUES and len(data) > 0):
                raise ValueError(f'{path}: "data" must be a non-empty uint8 array of shape '
                                 f'(N, {CIFAR_IMAGE_VALUES}), got '
                                 f'{getattr(data, "dtype", type(data).__name__)} '
                                 f'{getattr(data, "shape", "")}')
            if not isinstance(labels, list) or len(labels) != len(data):
                raise ValueError(f'{path}: "{self.label_key}" must be a list of {len(data)} '
                                 f'labels, got {type(labels).__name__} of length '
                                 f'{len(labels) if hasattr(labels, "__len__") else "?"}')
            bad = [label for label in labels
                   if not isinstance(label, int) or not 0 <= label < len(self.CLASSES)]
            if bad:
                raise ValueError(f'{path}: "{self.label_key}" holds {len(bad)} values outside '
                                 f'0..{len(self.CLASSES) - 1}, e.g. {bad[0]!r}')
        MMLogger.get_current_instance().warning(
            f'{type(self).__name__}: verify_md5=False, so the md5 sums of the files in '
            f'{self._path("")} are not checked; checked the structure of its {len(files) + 1} '
            'files instead (dict keys, uint8 (N, 3072) images, labels in range, class names)')
        self._structure_checked = True


@DATASETS.register_module()
class CheckedCIFAR10(_CheckedCIFAR, CIFAR10):
    __doc__ = 'CIFAR-10 (``cifar-10-batches-py``): ' + _CheckedCIFAR.__doc__


@DATASETS.register_module()
class CheckedCIFAR100(_CheckedCIFAR, CIFAR100):
    __doc__ = 'CIFAR-100 (``cifar-100-python``), fine labels: ' + _CheckedCIFAR.__doc__
    label_key = 'fine_labels'


WNID = re.compile(r'n\d{8}')


@DATASETS.register_module()
class CheckedImageNet(ImageNet):
    """mmpretrain's ImageNet, but an empty split is an error naming its annotation file or
    folder (mmpretrain fails later with numpy's "need at least one array to concatenate")."""

    def load_data_list(self):
        data_list = super().load_data_list()
        if not data_list:
            source = self.ann_file or self.img_prefix
            raise ValueError(f'{type(self).__name__}: no images listed in {source}')
        return data_list


@DATASETS.register_module()
class TinyImageNet(BaseDataset):
    """Tiny ImageNet-200 (the paper's §5.1.2) read from its distributed layout::

        wnids.txt                          the class wnids, one per line
        words.txt                          "<wnid>\\t<names>" (a superset of wnids.txt)
        train/<wnid>/images/*.JPEG
        val/images/*.JPEG, val/val_annotations.txt  "<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>"

    ``split='val'`` is the labelled validation set, which the paper (following common
    practice) uses as its test set; the test split has no labels. Labels are the indices of
    the sorted wnids, as torchvision's ImageFolder gives them; class names come from
    ``words.txt``. Every problem stops with an error naming the file (and line): a missing
    file or folder, a malformed line, a wnid not in ``wnids.txt``, a class folder without
    images, or an empty split.
    """

    def __init__(self, data_root: str, split: str = 'train', metainfo: dict = None, **kwargs):
        if split not in ('train', 'val'):
            raise ValueError(f"TinyImageNet: split must be 'train' or 'val', got {split!r}")
        if metainfo and 'classes' in metainfo or kwargs.get('classes') is not None:
            raise ValueError('TinyImageNet: classes come from wnids.txt and words.txt; '
                             'do not set them')
        self.split = split
        root = Path(data_root)
        if not root.is_dir():
            raise FileNotFoundError(f'TinyImageNet: data_root {root} is not a directory')
        self.wnids = self._read_wnids(root / 'wnids.txt')
        names = self._read_words(root / 'words.txt', self.wnids)
        super().__init__(ann_file='', metainfo=dict(metainfo or {}, classes=names),
                         data_root=data_root, **kwargs)

    @staticmethod
    def _read_lines(path: Path):
        if not path.is_file():
            raise FileNotFoundError(f'TinyImageNet: {path} does not exist')
        return [(number, line) for number, line in
                enumerate(path.read_text().splitlines(), start=1) if line.strip()]

    @classmethod
    def _read_wnids(cls, path: Path):
        wnids = []
        for number, line in cls._read_lines(path):
            if not WNID.fullmatch(line.strip()):
                raise ValueError(f'{path}:{number}: malformed line {line!r}, expected a wnid '
                                 'like n01443537')
            wnids.append(line.strip())
        if not wnids:
            raise ValueError(f'{path}: lists no wnids')
        duplicates = sorted({w for w in wnids if wnids.count(w) > 1})
        if duplicates:
            raise ValueError(f'{path}: wnids listed twice: {duplicates}')
        return sorted(wnids)

    @classmethod
    def _read_words(cls, path: Path, wnids):
        words = {}
        for number, line in cls._read_lines(path):
            wnid, tab, name = line.partition('\t')
            if not tab or not WNID.fullmatch(wnid) or not name.strip():
                raise ValueError(f'{path}:{number}: malformed line {line!r}, expected '
                                 '"<wnid>\\t<names>"')
            words[wnid] = name.strip()
        missing = [wnid for wnid in wnids if wnid not in words]
        if missing:
            raise ValueError(f'{path}: no names for the wnids {missing[:5]} of wnids.txt')
        return tuple(words[wnid] for wnid in wnids)

    def load_data_list(self):
        root = Path(self.data_root)
        label_of = {wnid: label for label, wnid in enumerate(self.wnids)}
        data_list = (self._train_list(root / 'train', label_of) if self.split == 'train'
                     else self._val_list(root / 'val', label_of))
        if not data_list:
            raise ValueError(f'TinyImageNet: the {self.split} split under {root} has no images')
        return data_list

    @staticmethod
    def _train_list(train: Path, label_of):
        if not train.is_dir():
            raise FileNotFoundError(f'TinyImageNet: {train} does not exist')
        unknown = sorted(p.name for p in train.iterdir() if p.name not in label_of)
        if unknown:
            raise ValueError(f'TinyImageNet: {train} has folders of wnids not in wnids.txt: '
                             f'{unknown[:5]}')
        data_list = []
        for wnid, label in label_of.items():
            images = train / wnid / 'images'
            if not images.is_dir():
                raise FileNotFoundError(f'TinyImageNet: {images} does not exist')
            paths = sorted(images.glob('*.JPEG'))
            if not paths:
                raise ValueError(f'TinyImageNet: {images} holds no .JPEG images')
            data_list += [dict(img_path=str(path), gt_label=label) for path in paths]
        return data_list

    @classmethod
    def _val_list(cls, val: Path, label_of):
        annotations = val / 'val_annotations.txt'
        data_list = []
        for number, line in cls._read_lines(annotations):
            fields = line.split('\t')
            if len(fields) != 6 or not all(f.strip().isdigit() for f in fields[2:]):
                raise ValueError(f'{annotations}:{number}: malformed line {line!r}, expected '
                                 '"<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>"')
            filename, wnid = fields[:2]
            if wnid not in label_of:
                raise ValueError(f'{annotations}:{number}: wnid {wnid!r} is not in wnids.txt')
            path = val / 'images' / filename
            if not path.is_file():
                raise FileNotFoundError(f'{annotations}:{number}: image {path} does not exist')
            data_list.append(dict(img_path=str(path), gt_label=label_of[wnid]))
        return data_list
