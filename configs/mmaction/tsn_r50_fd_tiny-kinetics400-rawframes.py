# mmaction2's stock TSN-R50 Kinetics-400 recipe (1x1x3: three one-frame segments) plus the README's
# three FocusedDropout lines, on the generated tiny rawframes set (fdrop_mm.tiny_data.rawframes:
# 16 frames of 80x64 a video) on a CPU. Everything below the three lines is a CPU or tiny-data
# adaptation; the model, loss, optimizer and schedule are the recipe's. TSN runs its 2-D ResNet
# on every frame, so backbone.layer3 gives (N*segments, C, H, W): one mask per frame.
# Data root: $KINETICS_ROOT, default data/tiny/kinetics400.
_base_ = 'mmaction::recognition/tsn/tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb.py'
custom_imports = dict(imports=['fdrop_mm'], allow_failed_imports=False)
custom_hooks = [dict(type='FocusedDropoutHook', targets=['backbone.layer3'],
                     participation=0.5)]  # (not 0.1) so that a run of a few steps has focused ones

model = dict(backbone=dict(pretrained=None))  # no download: the recipe starts from ImageNet weights
data_root = '{{$KINETICS_ROOT:data/tiny/kinetics400}}'
# The recipe's pipelines on rawframes (RawFrameDecode for DecordInit + DecordDecode), scaled from
# 256-pixel frames and 224-pixel crops to 64 and 56; the test pipeline is the validation one (the
# recipe's 25 clips x 10 crops would make a test of 4 videos a minute on a CPU).
train_pipeline = [
    dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=3),
    dict(type='RawFrameDecode'),
    dict(type='Resize', scale=(-1, 64)),
    dict(type='MultiScaleCrop', input_size=56, scales=(1, 0.875, 0.75, 0.66), random_crop=False,
         max_wh_scale_gap=1),
    dict(type='Resize', scale=(56, 56), keep_ratio=False),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs'),
]
val_pipeline = [
    dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=3, test_mode=True),
    dict(type='RawFrameDecode'),
    dict(type='Resize', scale=(-1, 64)),
    dict(type='CenterCrop', crop_size=56),
    dict(type='FormatShape', input_format='NCHW'),
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
