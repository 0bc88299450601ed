# What the CIFAR and Tiny ImageNet configs share (paper §5, "Implementation details"): an
# ImageClassifier (backbone, global average pooling, linear head; each leaf config sets the
# backbone and the head's in_channels / num_classes), SGD for 300 epochs with the learning rate
# x0.1 at epochs 150 and 225, validation after every epoch (the paper reports the highest
# validation accuracy over the run; tools/analysis_tools/aggregate_results.py reports it beside the
# final one).
# Not stated in the paper, so the common CIFAR recipe: lr 0.1, momentum 0.9, batch 128 on one GPU,
# weight decay 5e-4 (Fig. 6c's best, 1e-3, is then the FocusedDropout steps' decay at x2).
_base_ = ['mmpretrain::_base_/schedules/cifar10_bs128.py', 'mmpretrain::_base_/default_runtime.py']

custom_imports = dict(imports=['fdrop_mm'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))

optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4))
param_scheduler = dict(type='MultiStepLR', by_epoch=True, milestones=[150, 225], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
auto_scale_lr = dict(base_batch_size=128)

# A checkpoint every epoch, the newest kept (an interrupted run resumes losing at most one epoch),
# and the best by validation top-1.
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=1, max_keep_ckpts=1, save_best='accuracy/top1', rule='greater'))
