# mmpose's stock top-down heatmap ResNet-50 COCO person-keypoints recipe (256x192 input) plus the
# README's three FocusedDropout lines, on the generated tiny COCO keypoints set
# (fdrop_mm.tiny_data.coco_keypoints: 96x128 images, one person each) on a CPU. Everything below the
# hook's lines is a CPU or tiny-data adaptation; the model, codec, pipelines, loss, optimizer,
# schedule's form and CocoMetric are the recipe's. Data root: $COCO_ROOT, default data/tiny/coco.
_base_ = 'mmpose::body_2d_keypoint/topdown_heatmap/coco/td-hm_res50_8xb64-210e_coco-256x192.py'
custom_imports = dict(imports=['fdrop_mm'], allow_failed_imports=False)
# No targets: the hook's default, the backbone's penultimate stage (backbone.layer3 here, logged).
custom_hooks = [dict(type='FocusedDropoutHook',
                     participation=0.5)]  # (not 0.1) so that a run of a few steps has focused ones

# the recipe's 256x192 input and 64x48 heatmaps, halved (ResNet's stride 32 needs sides divisible
# by 32, and the head's three deconvolutions make the heatmap input / 4)
codec = dict(type='MSRAHeatmap', input_size=(96, 128), heatmap_size=(24, 32), sigma=2)
model = dict(
    backbone=dict(init_cfg=None),  # no download: the recipe starts from torchvision's ResNet-50
    head=dict(decoder=codec))
data_root = '{{$COCO_ROOT:data/tiny/coco}}/'
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomHalfBody'),
    dict(type='RandomBBoxTransform'),
    dict(type='TopdownAffine', input_size=codec['input_size']),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackPoseInputs')
]
val_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='TopdownAffine', input_size=codec['input_size']),
    dict(type='PackPoseInputs')
]
# two people a step; no worker processes (2 CPU cores); validation on the ground-truth boxes
# (bbox_file=None: the recipe's person detections are of the real val2017)
loader = dict(batch_size=2, num_workers=0, persistent_workers=False)
train_dataloader = dict(**loader, dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(**loader, dataset=dict(data_root=data_root, bbox_file=None, pipeline=val_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/person_keypoints_val2017.json')
test_evaluator = val_evaluator
# one epoch (4 steps), validated and saved; --resume with train_cfg.max_epochs=2 continues
train_cfg = dict(max_epochs=1, val_interval=1)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
randomness = dict(seed=0)
