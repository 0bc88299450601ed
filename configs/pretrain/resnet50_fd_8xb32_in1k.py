# FocusedDropout arm (paper §5.3): the baseline recipe plus FocusedDropout on the
# output of the penultimate stage (layer3, §5), on 10% of the optimizer steps,
# gamma ~ U(0.3, 0.6), weight decay x2 on those steps (§4, §5.2).
_base_ = './resnet50_8xb32_in1k.py'

custom_hooks = [
    dict(type='FocusedDropoutHook', participation=0.1, weight_decay_multiplier=2.0,
         targets=['backbone.layer3'], gamma_range=(0.3, 0.6)),
]
