# CPU smoke run of the baseline pretraining on the generated tiny ImageNet-format set
# (tools/misc/make_tiny_data.py): 20 classes of 64x64 images, ResNet-50, 4 epochs. The classes are
# the drawings of the tiny VOC's 20 classes, as real ImageNet covers VOC's: with only the first
# 10 of them, the transferred backbone did not beat a random one in the detection fine-tune
# (VOC07 mAP 0.067 vs 0.077 floor; 20 classes: 0.187).
# Data root: $IMAGENET_ROOT as in the full config, default here data/tiny/imagenet.
_base_ = '../pretrain/resnet50_8xb32_in1k.py'

data_root = '{{$IMAGENET_ROOT:data/tiny/imagenet}}'
num_classes = 20
model = dict(head=dict(num_classes=num_classes, topk=(1, 5)))
data_preprocessor = dict(num_classes=num_classes)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=64, crop_ratio_range=(0.5, 1.0)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
dataset = dict(data_root=data_root, classes=data_root + '/meta/classes.txt')
train_dataloader = dict(batch_size=16, num_workers=2, persistent_workers=False,
                        dataset=dict(**dataset, pipeline=train_pipeline))
val_dataloader = dict(batch_size=32, num_workers=2, persistent_workers=False,
                      dataset=dict(**dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader

max_epochs = 4
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=2)
optim_wrapper = dict(optimizer=dict(lr=0.05))
param_scheduler = dict(type='MultiStepLR', by_epoch=True, milestones=[3], gamma=0.1)
auto_scale_lr = dict(enable=False)
# A checkpoint every epoch (an interrupted stage resumes from it; saving changes no numbers), only
# the newest kept, to spare CI's disk: a kill while it is written restarts this stage of minutes.
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=1, max_keep_ckpts=1))
randomness = dict(seed=0)
