"""mmdet adapters, imported by the detection configs (``custom_imports``) rather than by
``import fdrop_mm``, so that classification-only environments without mmcv's ops can use
the package."""
import os.path as osp
import xml.etree.ElementTree as ET

from mmdet.datasets import VOCDataset
from mmdet.evaluation import VOCMetric
from mmdet.evaluation.functional import eval_map
from mmdet.registry import DATASETS, METRICS


@DATASETS.register_module()
class CheckedVOCDataset(VOCDataset):
    """mmdet's VOCDataset, failing loudly instead of quietly: a missing data root or image
    list, an empty image list (mmengine would fail later with numpy's "need at least one
    array to concatenate"), malformed XML, an unknown class name (VOCDataset skips those
    objects silently) or a box outside the image raise an error naming the file."""

    def load_data_list(self):
        for field, path in (('data_root', self.data_root), ('ann_file', self.ann_file)):
            if not osp.exists(path):
                raise FileNotFoundError(f'{type(self).__name__}: {field} {path} does not exist')
        data_list = super().load_data_list()
        if not data_list:
            raise ValueError(f'{type(self).__name__}: ann_file {self.ann_file} lists no image ids')
        return data_list

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
        for obj in raw_ann_info.findall('object'):
            name = obj.find('name').text
            if name not in self._metainfo['classes']:
                raise ValueError(f'unknown class name {name!r} (classes: {self._metainfo["classes"]})')
            box = [float(obj.find('bndbox').find(k).text) for k in ('xmin', 'ymin', 'xmax', 'ymax')]
            if not (1 <= box[0] < box[2] <= width and 1 <= box[1] < box[3] <= height):
                raise ValueError(f'box {box} of a {name!r} lies outside the {width}x{height} image '
                                 '(VOC boxes are 1-based, inclusive)')
        return super()._parse_instance_info(raw_ann_info, minus_one=minus_one)


@METRICS.register_module()
class VOCMetricPerClass(VOCMetric):
    """mmdet's VOCMetric, also reporting each class's AP at IoU 0.5 as ``AP50_<class>``,
    so result tables can list per-class AP (VOCMetric only logs them as a text table)."""

    def compute_metrics(self, results: list) -> dict:
        metrics = super().compute_metrics(results)
        if self.metric != 'mAP':
            return metrics
        gts, preds = zip(*results)
        _, per_class = eval_map(preds, gts, scale_ranges=self.scale_ranges, iou_thr=0.5,
                                logger='silent', eval_mode=self.eval_mode, use_legacy_coordinate=True)
        for name, result in zip(self.dataset_meta['classes'], per_class):
            metrics[f'AP50_{name}'] = float(result['ap'])
        return metrics
