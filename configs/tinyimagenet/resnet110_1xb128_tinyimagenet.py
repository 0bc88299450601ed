# ResNet-110 on Tiny ImageNet-200 (paper §5.1.2, Table 3's baseline row; the other rows' configs in
# table3/ inherit it): 64x64 images, trained on train/, evaluated on val/ (the paper uses
# the labelled validation set as its test set), the CIFAR schedule (300 epochs, lr x0.1 at 150
# and 225). Augmentation as on CIFAR: flip and random crop, padding 8 (CIFAR's 4 at twice the size).
# Data root: $TINY_IMAGENET_200_ROOT, default data/tiny-imagenet-200 (the unpacked
# tiny-imagenet-200.zip: wnids.txt, words.txt, train/, val/), read by fdrop_mm's TinyImageNet.
_base_ = '../cifar/_base_/classifier_300e.py'

data_root = '{{$TINY_IMAGENET_200_ROOT:data/tiny-imagenet-200}}'
num_classes = 200
model = dict(backbone=dict(type='CifarResNet', depth=110),
             head=dict(in_channels=64, num_classes=num_classes, topk=(1, 5)))
data_preprocessor = dict(num_classes=num_classes, mean=[123.675, 116.28, 103.53],
                         std=[58.395, 57.12, 57.375], to_rgb=True)  # ImageNet's statistics

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomCrop', crop_size=64, padding=8),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=128, num_workers=4,
    dataset=dict(type='TinyImageNet', data_root=data_root, split='train', pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=128, num_workers=4,
    dataset=dict(type='TinyImageNet', data_root=data_root, split='val', pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
