# The live mask pictures of docs/pictures.md: a short continuation of the tiny FD pretraining
# (load_from its checkpoint on the command line) with FocusedDropoutVisualizationHook, which
# writes every 2nd focused iteration's first 3 samples to vis_data/vis_image/fd_mask_<iter>.png.
# 160 training images (10 iterations), one epoch at a tenth of the learning rate, no checkpoint.
_base_ = './resnet50_fd_tiny-imagenet.py'

custom_hooks = [
    dict(type='FocusedDropoutHook', participation=0.5, weight_decay_multiplier=2.0,
         targets=['backbone.layer3'], gamma_range=(0.3, 0.6)),
    dict(type='FocusedDropoutVisualizationHook', interval=2, num_samples=3),
]
train_dataloader = dict(dataset=dict(indices=160))
train_cfg = dict(max_epochs=1)
optim_wrapper = dict(optimizer=dict(lr=0.005))
default_hooks = dict(checkpoint=dict(interval=-1, save_last=False))
