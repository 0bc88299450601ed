# RetinaNet R50-FPN on VOC 2007+2012 trainval, VOC2007 test, 11-point mAP: mmdet's stock
# recipe, with the backbone initialised from the baseline ImageNet pretraining (paper §5.3).
# The backbone checkpoint comes from tools/model_converters/extract_backbone.py; it must load
# every backbone parameter and buffer (StrictPretrained), or initialisation fails naming what is
# missing.
# Data root: $VOC_ROOT (default data/VOCdevkit/); checkpoint: $BACKBONE_CKPT.
_base_ = 'mmdet::pascal_voc/retinanet_r50_fpn_1x_voc0712.py'

custom_imports = dict(imports=['fdrop_mm'], allow_failed_imports=False)

# CheckedVOCDataset: VOCDataset that stops when built on a missing path, a missing or empty
# image, malformed XML, an unknown class name or an invalid box, naming the file, where
# VOCDataset would skip, crash bare or fail only when the image is loaded.
data_root = '{{$VOC_ROOT:data/VOCdevkit/}}'
checked = dict(type='CheckedVOCDataset', data_root=data_root)
_base_.train_dataloader.dataset.dataset.datasets[0].update(checked)
_base_.train_dataloader.dataset.dataset.datasets[1].update(checked)
_base_.val_dataloader.dataset.update(checked)
_base_.test_dataloader.dataset.update(checked)
# the stock VOC2007 11-point mAP, plus each class's AP in the metrics
val_evaluator = dict(type='VOCMetricPerClass')
test_evaluator = val_evaluator

# Workers started afresh each epoch (mmdet's VOC config keeps them, persistent_workers=True):
# mmengine seeds each new worker from (seed, rank, worker), so every epoch's augmentation draws
# start from the same state and a run resumed at an epoch repeats the uninterrupted one's; kept
# workers would carry their random state from epoch to epoch, which a resume cannot restore.
train_dataloader = dict(persistent_workers=False)
# A checkpoint after every epoch, the newest 2 kept (mmdet's default_runtime also saves every epoch
# but keeps all): an interrupted run resumes losing at most one epoch. Two, because mmengine
# deletes the oldest kept checkpoint before it writes the next: a kill while that one is written
# still leaves the one before it. The disk this takes: docs/checkpoints.md.
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2))

backbone_checkpoint = '{{$BACKBONE_CKPT:work_dirs/resnet50_8xb32_in1k/backbone.pth}}'
model = dict(backbone=dict(init_cfg=dict(type='StrictPretrained', checkpoint=backbone_checkpoint,
                                         prefix='backbone.')))
