# The FocusedDropout backbone, with FocusedDropout also during fine-tuning. The paper (§5.3) does
# not say whether its detection fine-tune used FD; this variant offers it. layer3 is trainable
# here (frozen_stages=1 freezes only the stem and layer1).
_base_ = './retinanet_r50_fpn_1x_voc0712_from-fd.py'

custom_hooks = [
    dict(type='FocusedDropoutHook', participation=0.1, weight_decay_multiplier=2.0,
         targets=['backbone.layer3'], gamma_range=(0.3, 0.6)),
]
