# resnet56/fd, Table 2 (FocusedDropout, ResNet56); Table 4 (+FocusedDropout, ResNet56); Fig. 6a
# (participation 0.1, ResNet56); Fig. 6b (γ ~ U(0.3, 0.6), ResNet56); Fig. 6c (1e-03 on focused
# steps (x2), ResNet56): the base config with this method (§5). Written by
# tools/misc/write_table_configs.py from fdrop_mm/experiments/tables.py; change it there and rerun
# the tool.
_base_ = '../resnet56_1xb128_cifar100.py'

model = dict(backbone=dict(stage_regularizer=dict(
    cfg=dict(type='FocusedDropout'), after_stages=(1, ))))
custom_hooks = [dict(type='FocusedDropoutHook')]
