# CIFAR-100 through mmpretrain's stock dataset config (random crop 32 with 4-pixel padding and
# horizontal flip, §5's "flipping, random cropping"), batch 128, on the shared schedule.
# Data root: $CIFAR100_ROOT, default data/cifar100 (holding cifar-100-python/).
# CheckedCIFAR100 is mmpretrain's CIFAR100, md5-checked, naming a missing or altered file;
# verify_md5=False checks the structure instead, for generated data
# (fdrop_mm/classification_data.py).
_base_ = ['mmpretrain::_base_/datasets/cifar100_bs16.py', './classifier_300e.py']

data_root = '{{$CIFAR100_ROOT:data/cifar100}}'
model = dict(head=dict(num_classes=100))
train_dataloader = dict(batch_size=128, num_workers=4,
                        dataset=dict(type='CheckedCIFAR100', data_root=data_root))
val_dataloader = dict(batch_size=128, num_workers=4,
                      dataset=dict(type='CheckedCIFAR100', data_root=data_root))
test_dataloader = val_dataloader
