"""VOC2007 mAP with each class's AP in the metrics (mmdet's METRICS)."""
from mmdet.evaluation import VOCMetric
from mmdet.evaluation.functional import eval_map
from mmdet.registry import METRICS


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
