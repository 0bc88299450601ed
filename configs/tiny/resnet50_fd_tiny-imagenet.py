# CPU smoke run of the FocusedDropout pretraining arm: the tiny baseline plus the FD arm's hook
# (configs/pretrain/resnet50_fd_8xb32_in1k.py), at participation 0.5 instead of 0.1 so that a
# few-minute run has enough focused steps to show.
_base_ = './resnet50_tiny-imagenet.py'

custom_hooks = [
    dict(type='FocusedDropoutHook', participation=0.5, weight_decay_multiplier=2.0,
         targets=['backbone.layer3'], gamma_range=(0.3, 0.6)),
]
