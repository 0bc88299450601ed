# The tiny detection fine-tune with FocusedDropout during fine-tuning too
# (configs/detection/retinanet_r50_fpn_1x_voc0712_from-fd_fd-finetune.py), participation 0.5.
_base_ = './retinanet_r50_fpn_voc0712_tiny.py'

custom_hooks = [
    dict(type='FocusedDropoutHook', participation=0.5, weight_decay_multiplier=2.0,
         targets=['backbone.layer3'], gamma_range=(0.3, 0.6)),
]
