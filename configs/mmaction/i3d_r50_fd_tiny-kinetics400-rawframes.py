# mmaction2's stock I3D-R50 Kinetics-400 recipe (32x2x1: one clip of 32 frames, every 2nd) plus the
# README's FocusedDropout lines (without targets), on the generated tiny rawframes set
# (fdrop_mm.tiny_data.rawframes: 16 frames of 80x64 a video) on a CPU. Everything below the hook's
# lines is a CPU or tiny-data adaptation; the model, loss, optimizer and schedule are the recipe's.
# I3D's ResNet3d gives (N, C, T, H, W) at backbone.layer3: one mask per clip, over its T x H x W.
# Data root: $KINETICS_ROOT, default data/tiny/kinetics400.
_base_ = 'mmaction::recognition/i3d/i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb.py'
custom_imports = dict(imports=['fdrop_mm'], allow_failed_imports=False)
# No targets: the hook's default, the backbone's penultimate stage (backbone.layer3 here, logged).
custom_hooks = [dict(type='FocusedDropoutHook',
                     participation=0.5)]  # (not 0.1) so that a run of a few steps has focused ones

# no download: the recipe inflates ImageNet's 2-D ResNet-50 (pretrained2d)
model = dict(backbone=dict(pretrained2d=False, pretrained=None))
data_root = '{{$KINETICS_ROOT:data/tiny/kinetics400}}'
# The recipe's pipelines on rawframes (RawFrameDecode for DecordInit + DecordDecode), scaled from
# 256-pixel frames and 224-pixel crops to 64 and 56, and from 32-frame clips to 8 (a 16-frame
# video); the test pipeline is the validation one (not the recipe's 10 clips x 3 crops).
train_pipeline = [
    dict(type='SampleFrames', clip_len=8, frame_interval=2, num_clips=1),
    dict(type='RawFrameDecode'),
    dict(type='Resize', scale=(-1, 64)),
    dict(type='MultiScaleCrop', input_size=56, scales=(1, 0.8), random_crop=False, max_wh_scale_gap=0),
    dict(type='Resize', scale=(56, 56), keep_ratio=False),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
val_pipeline = [
    dict(type='SampleFrames', clip_len=8, frame_interval=2, num_clips=1, test_mode=True),
    dict(type='RawFrameDecode'),
    dict(type='Resize', scale=(-1, 64)),
    dict(type='CenterCrop', crop_size=56),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
splits = {split: dict(type='RawframeDataset', data_root=data_root,
                      ann_file=f'kinetics400_{split}_list_rawframes.txt',
                      data_prefix=dict(_delete_=True, img=f'rawframes_{split}'))
          for split in ('train', 'val')}
# two videos a step; no worker processes (2 CPU cores)
loader = dict(batch_size=2, num_workers=0, persistent_workers=False)
train_dataloader = dict(**loader, dataset=dict(**splits['train'], pipeline=train_pipeline))
val_dataloader = dict(**loader, dataset=dict(**splits['val'], pipeline=val_pipeline))
test_dataloader = dict(**loader, dataset=dict(**splits['val'], pipeline=val_pipeline))
# one epoch (4 steps), validated and saved; --resume with train_cfg.max_epochs=2 continues
train_cfg = dict(max_epochs=1)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
randomness = dict(seed=0)
