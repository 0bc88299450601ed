# Baseline arm (paper §5.3): mmpretrain's stock ResNet-50 ImageNet-1k recipe
# (8 GPUs x 32, SGD lr 0.1, wd 1e-4, 100 epochs, steps at 30/60/90).
# Data root: $IMAGENET_ROOT, default data/imagenet (train/, val/, meta/{train,val}.txt).
_base_ = 'mmpretrain::resnet/resnet50_8xb32_in1k.py'

custom_imports = dict(imports=['fdrop_mm'], allow_failed_imports=False)

data_root = '{{$IMAGENET_ROOT:data/imagenet}}'
# CheckedImageNet: mmpretrain's ImageNet, but an empty split stops with the file named
train_dataloader = dict(dataset=dict(type='CheckedImageNet', data_root=data_root))
val_dataloader = dict(dataset=dict(type='CheckedImageNet', data_root=data_root))
test_dataloader = val_dataloader

# A checkpoint after every epoch, the newest 2 kept (mmpretrain's default_runtime also saves every
# epoch but keeps all 100): an interrupted run resumes losing at most one epoch. Two, because
# mmengine deletes the oldest kept checkpoint before it writes the next: a kill while that one is
# written still leaves the one before it. The disk this takes: docs/checkpoints.md.
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2))
