"""``CheckedVOCDataset``: mmdet's VOCDataset, failing loudly (mmdet's DATASETS; registered when
``fdrop_mm`` is imported with mmdet installed)."""
import os
import os.path as osp
import xml.etree.ElementTree as ET
from typing import List

from mmdet.datasets import VOCDataset
from mmdet.registry import DATASETS


def box_problems(box: List[float], width: int, height: int) -> List[str]:
    """What is wrong with a VOC box ``[xmin, ymin, xmax, ymax]`` (1-based, inclusive) in a
    ``width`` x ``height`` image; [] for a valid one."""
    xmin, ymin, xmax, ymax = box
    problems = []
    for axis, low, high, extent in (('x', xmin, xmax, 'width'), ('y', ymin, ymax, 'height')):
        if low > high:
            problems.append(f'{axis}min {low:g} > {axis}max {high:g}')
        elif low == high:
            problems.append(f'{axis}min == {axis}max == {low:g} (an empty box: zero {extent})')
    outside = []
    for name, value, limit, extent in (('xmin', xmin, width, 'width'), ('ymin', ymin, height, 'height'),
                                       ('xmax', xmax, width, 'width'), ('ymax', ymax, height, 'height')):
        if value < 1:
            outside.append(f'{name} {value:g} < 1')
        elif value > limit:
            outside.append(f'{name} {value:g} > image {extent} {limit}')
    if outside:
        problems.append(', '.join(outside) + f' (outside the {width}x{height} image; VOC boxes '
                        'are 1-based, inclusive)')
    return problems


@DATASETS.register_module()
class CheckedVOCDataset(VOCDataset):
    """mmdet's VOCDataset, failing loudly when it is built instead of quietly or later: a
    missing data root or image list, an empty image list (mmengine would fail later with
    numpy's "need at least one array to concatenate"), a listed image that is missing or
    empty (mmdet would fail only when loading it, for a test image after all of training),
    malformed XML, an unknown class name (VOCDataset skips those objects silently) or an
    invalid box raise an error naming the file. Unreadable image bytes are named when the
    image is decoded (mmcv's LoadImageFromFile)."""

    def load_data_list(self):
        for field, path in (('data_root', self.data_root), ('ann_file', self.ann_file)):
            if not osp.exists(path):
                raise FileNotFoundError(f'{type(self).__name__}: {field} {path} does not exist')
        data_list = super().load_data_list()
        if not data_list:
            raise ValueError(f'{type(self).__name__}: ann_file {self.ann_file} lists no image ids')
        for info in data_list:
            self._check_image_file(info['img_path'])
        return data_list

    def _check_image_file(self, path: str) -> None:
        listed = f'listed in {self.ann_file}'
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            raise FileNotFoundError(f'{type(self).__name__}: image {path} ({listed}) does not '
                                    'exist') from None
        if size == 0:
            raise ValueError(f'{type(self).__name__}: image {path} ({listed}) is empty (0 bytes)')

    def filter_data(self):
        kept = super().filter_data()
        if not kept:
            raise ValueError(f'{type(self).__name__}: filter_cfg {self.filter_cfg} removed all '
                             f'{len(self.data_list)} images of {self.ann_file}')
        return kept

    def parse_data_info(self, img_info: dict):
        try:
            return super().parse_data_info(img_info)
        except (ET.ParseError, ValueError, AttributeError, TypeError) as error:
            raise ValueError(f'{img_info["xml_path"]}: bad VOC annotation: {error}') from error

    def _parse_instance_info(self, raw_ann_info, minus_one: bool = True):
        size = raw_ann_info.getroot().find('size')
        width, height = int(size.find('width').text), int(size.find('height').text)
        objects = raw_ann_info.findall('object')
        for number, obj in enumerate(objects, start=1):
            name = obj.find('name').text
            where = f'object {number} of {len(objects)} ({name!r})'
            if name not in self._metainfo['classes']:
                raise ValueError(f'{where}: unknown class name {name!r} '
                                 f'(classes: {self._metainfo["classes"]})')
            coordinates = ('xmin', 'ymin', 'xmax', 'ymax')
            box = [float(obj.find('bndbox').find(k).text) for k in coordinates]
            problems = box_problems(box, width, height)
            if problems:
                shown = ' '.join(f'{k}={v:g}' for k, v in zip(coordinates, box))
                raise ValueError(f'{where}, box {shown}: ' + '; '.join(problems))
        return super()._parse_instance_info(raw_ann_info, minus_one=minus_one)

