# mmsegmentation's stock PSPNet-R50-D8 ADE20K recipe plus the README's three FocusedDropout lines,
# on the generated tiny ADE20K (fdrop_mm.tiny_data.ade20k: 96x64 images) on a CPU. Everything below
# the three lines is a CPU or tiny-data adaptation; the model, loss, optimizer and schedule's form
# are the recipe's. Data root: $ADE20K_ROOT, default data/tiny/ADEChallengeData2016.
_base_ = 'mmseg::pspnet/pspnet_r50-d8_4xb4-80k_ade20k-512x512.py'
custom_imports = dict(imports=['fdrop_mm'], allow_failed_imports=False)
custom_hooks = [dict(type='FocusedDropoutHook', targets=['backbone.layer3'],
                     participation=0.5)]  # (not 0.1) so that a run of a few steps has focused ones

# SyncBN needs a process group (a one-process run has none); plain BN is what it computes on one.
norm_cfg = dict(type='BN', requires_grad=True)
crop_size = (64, 64)  # the recipe's 512x512 crops of 2048x512-scaled images, scaled to 96x64 images
model = dict(
    pretrained=None,  # no download: the recipe starts from ImageNet's open-mmlab://resnet50_v1c
    data_preprocessor=dict(size=crop_size),
    backbone=dict(norm_cfg=norm_cfg),
    decode_head=dict(norm_cfg=norm_cfg),
    auxiliary_head=dict(norm_cfg=norm_cfg))
data_root = '{{$ADE20K_ROOT:data/tiny/ADEChallengeData2016}}'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(256, 64), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 64), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
# two images a step; no worker processes (2 CPU cores)
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
# a few steps, validated and saved at the end; the poly schedule decays over them
max_iters = 4
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters, by_epoch=False)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=max_iters))
randomness = dict(seed=0)
