# CPU smoke run of the detection fine-tune on the generated tiny VOCdevkit (192x160 images):
# small input, a narrow FPN and head, few epochs. The backbone is still the full ResNet-50, so
# the transfer from the tiny pretraining is the real one.
# Data root: $VOC_ROOT as in the full config, default here data/tiny/VOCdevkit/.
_base_ = '../detection/retinanet_r50_fpn_1x_voc0712_from-baseline.py'

data_root = '{{$VOC_ROOT:data/tiny/VOCdevkit/}}'
img_scale = (128, 112)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
_base_.train_dataloader.dataset.dataset.datasets[0].update(data_root=data_root, pipeline=train_pipeline)
_base_.train_dataloader.dataset.dataset.datasets[1].update(data_root=data_root, pipeline=train_pipeline)
_base_.train_dataloader.dataset.times = 1
_base_.val_dataloader.dataset.update(data_root=data_root, pipeline=test_pipeline)
_base_.test_dataloader.dataset.update(data_root=data_root, pipeline=test_pipeline)
train_dataloader = dict(batch_size=4, num_workers=2, persistent_workers=False)
val_dataloader = dict(num_workers=2, persistent_workers=False)
test_dataloader = val_dataloader

backbone_checkpoint = '{{$BACKBONE_CKPT:work_dirs/resnet50_tiny-imagenet/backbone.pth}}'
model = dict(
    backbone=dict(init_cfg=dict(checkpoint=backbone_checkpoint)),
    neck=dict(out_channels=64),
    bbox_head=dict(in_channels=64, feat_channels=64, stacked_convs=2))

# AdamW instead of the stock SGD lr 0.01: in the ~250 steps of a smoke run SGD barely moves a
# freshly initialised RetinaNet head (VOC07 mAP 0.04 after 8 epochs here, AdamW 0.16).
optim_wrapper = dict(optimizer=dict(_delete_=True, type='AdamW', lr=1e-3, weight_decay=1e-4))
max_epochs = 10
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
# The stock linear warm-up (500 iterations there, 50 of the ~250 here) is not optional: without
# it, AdamW's first full-size steps on a pretrained backbone's large activations kill the
# classification branch (loss_cls never leaves its initial value; VOC07 mAP 0.00 with a frozen
# pretrained backbone, 0.08 fine-tuned, against 0.19 with the warm-up).
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8], gamma=0.1)]
# A checkpoint every epoch (an interrupted stage resumes from it; saving changes no numbers), only
# the newest kept, to spare CI's disk: a kill while it is written restarts this stage of minutes.
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=1, max_keep_ckpts=1))
randomness = dict(seed=0)
