# CIFAR-10 through mmpretrain's stock dataset config (random crop 32 with 4-pixel padding and
# horizontal flip, §5's "flipping, random cropping"), batch 128, on the shared schedule.
# Data root: $CIFAR10_ROOT, default data/cifar10 (holding cifar-10-batches-py/).
# CheckedCIFAR10 is mmpretrain's CIFAR10, md5-checked, naming a missing or altered file;
# verify_md5=False checks the structure instead, for generated data
# (fdrop_mm/classification_data.py).
_base_ = ['mmpretrain::_base_/datasets/cifar10_bs16.py', './classifier_300e.py']

data_root = '{{$CIFAR10_ROOT:data/cifar10}}'
model = dict(head=dict(num_classes=10))
train_dataloader = dict(batch_size=128, num_workers=4,
                        dataset=dict(type='CheckedCIFAR10', data_root=data_root))
val_dataloader = dict(batch_size=128, num_workers=4,
                      dataset=dict(type='CheckedCIFAR10', data_root=data_root))
test_dataloader = val_dataloader
