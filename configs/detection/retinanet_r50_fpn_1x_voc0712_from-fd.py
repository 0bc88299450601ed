# As the baseline detector, with the backbone from the FocusedDropout pretraining (paper §5.3).
_base_ = './retinanet_r50_fpn_1x_voc0712_from-baseline.py'

backbone_checkpoint = '{{$BACKBONE_CKPT:work_dirs/resnet50_fd_8xb32_in1k/backbone.pth}}'
model = dict(backbone=dict(init_cfg=dict(checkpoint=backbone_checkpoint)))
