# mmaction2's stock SlowOnly-R50 Kinetics-400 recipe (8x8x1: one clip of 8 frames, every 8th) plus
# the README's FocusedDropout lines (without targets), on the generated tiny video set
# (fdrop_mm.tiny_data.videos: mp4 files of 16 frames of 80x64, read by decord as the recipe does) on
# a CPU. Everything below the hook's lines is a CPU or tiny-data adaptation; the model, loss,
# optimizer and schedule are the recipe's. SlowOnly's ResNet3d gives (N, C, T, H, W) at
# backbone.layer3: one mask per clip, over T x H x W.
# Data root: $KINETICS_VIDEOS_ROOT, default data/tiny/kinetics400_videos.
_base_ = 'mmaction::recognition/slowonly/slowonly_r50_8xb16-8x8x1-256e_kinetics400-rgb.py'
custom_imports = dict(imports=['fdrop_mm'], allow_failed_imports=False)
# No targets: the hook's default, the backbone's penultimate stage (backbone.layer3 here, logged).
custom_hooks = [dict(type='FocusedDropoutHook',
                     participation=0.5)]  # (not 0.1) so that a run of a few steps has focused ones

model = dict(backbone=dict(pretrained=None))  # no download: the recipe starts from ImageNet weights
data_root = '{{$KINETICS_VIDEOS_ROOT:data/tiny/kinetics400_videos}}'
# The recipe's pipelines scaled from 256-pixel frames and 224-pixel crops to 64 and 56, and frames
# every 2nd instead of every 8th (a 16-frame video); the test pipeline is the validation one (not
# the recipe's 10 clips x 3 crops).
train_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(type='SampleFrames', clip_len=8, frame_interval=2, num_clips=1),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 64)),
    dict(type='RandomResizedCrop'),
    dict(type='Resize', scale=(56, 56), keep_ratio=False),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
val_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(type='SampleFrames', clip_len=8, frame_interval=2, num_clips=1, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 64)),
    dict(type='CenterCrop', crop_size=56),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
splits = {split: dict(data_root=data_root, ann_file=f'kinetics400_{split}_list_videos.txt',
                      data_prefix=dict(video=f'videos_{split}'))
          for split in ('train', 'val')}
# two videos a step; no worker processes (2 CPU cores)
loader = dict(batch_size=2, num_workers=0, persistent_workers=False)
train_dataloader = dict(**loader, dataset=dict(**splits['train'], pipeline=train_pipeline))
val_dataloader = dict(**loader, dataset=dict(**splits['val'], pipeline=val_pipeline))
test_dataloader = dict(**loader, dataset=dict(**splits['val'], pipeline=val_pipeline))
# one epoch (4 steps), validated and saved (the recipe: every 5th and 4th epoch); --resume with
# train_cfg.max_epochs=2 continues
train_cfg = dict(max_epochs=1, val_interval=1)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
randomness = dict(seed=0)
