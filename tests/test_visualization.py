"""Pictures of what FocusedDropout does (issue 6): the hook's live mask images, the CAM grid,
reference-channel histograms and curves (fdrop_mm.visualization and the tools that draw them),
rendered from tiny CPU runs made here."""
import csv
import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from PIL import Image

from fdrop_mm import focused_mask
from fdrop_mm.engine.hooks import FocusedDropoutVisualizationHook
from fdrop_mm.visualization import kept_positions
from fdrop_mm.visualization.cam import TITLE_PX, cam_grid
from fdrop_mm.visualization.curves import ScalarLog, plot_curves
from fdrop_mm.visualization.drawing import LABEL_HEIGHT, MIN_PANEL_SIDE
from fdrop_mm.visualization.ref_channels import reference_channel_stats
from fdrop_mm.visualization.scalars import read_scalars
from tests.conftest import classifier_cfg, run_tool

IMAGE_SIDE = 32  # conftest.write_image_folder
VIS_CAM = 'visualization/vis_cam.py'
REF_CHANNEL_STATS = 'analysis_tools/ref_channel_stats.py'
PLOT_CURVES = 'analysis_tools/plot_curves.py'


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """These networks are tiny: a second intra-op thread only adds contention on a shared
    2-core machine (measured 0.7 s against 0.04 s per training step under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train(image_folder: Path, work_dir: Path, epochs: int, vis=None) -> SimpleNamespace:
    """A tiny classifier trained with FocusedDropoutHook (and ``vis``, the settings of a
    FocusedDropoutVisualizationHook), validated and logged every iteration."""
    evaluation = dict(
        dataloader=dict(batch_size=16, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
                        dataset=dict(type='CustomDataset', data_root=str(image_folder),
                                     pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')])),
        evaluator=dict(type='Accuracy', topk=(1, )), cfg=dict())
    cfg = classifier_cfg(
        image_folder, work_dir,
        train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=epochs, val_interval=1),
        **{f'{split}_{key}': value for split in ('val', 'test') for key, value in evaluation.items()},
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1),
                           checkpoint=dict(type='CheckpointHook', interval=epochs)),
        custom_hooks=[dict(type='FocusedDropoutHook', participation=0.5, targets=['backbone.layer3'])]
        + ([dict(type='FocusedDropoutVisualizationHook', **vis)] if vis else []))
    runner = Runner.from_cfg(cfg)
    runner.train()
    config = work_dir / 'config.py'
    runner.cfg.dump(str(config))
    return SimpleNamespace(work_dir=work_dir, config=str(config), checkpoint=str(work_dir / f'epoch_{epochs}.pth'),
                           vis_data=Path(runner.log_dir) / 'vis_data')


@pytest.fixture(scope='module')
def runs(image_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp('vis_runs')
    return SimpleNamespace(vis=train(image_folder, root / 'vis', epochs=2, vis=dict(interval=2, num_samples=2)),
                           plain=train(image_folder, root / 'plain', epochs=1))


def train_records(vis_data: Path):
    records = [json.loads(line) for line in (vis_data / 'scalars.json').read_text().splitlines()]
    return [r for r in records if 'iter' in r]


def read_png(path: Path, size) -> np.ndarray:
    """The RGB pixels of a PNG of the given (width, height) whose content is not constant."""
    with Image.open(path) as image:
        assert image.format == 'PNG' and image.size == size
        pixels = np.asarray(image.convert('RGB'))
    assert pixels.std() > 5
    return pixels


# live mask pictures (FocusedDropoutVisualizationHook) ----------------------------------
@pytest.mark.slow
def test_live_mask_images_every_second_focused_iteration(runs, image_folder):
    focused = [r['iter'] for r in train_records(runs.vis.vis_data) if r['fd/active'] == 1]
    assert len(focused) >= 2
    images = {int(re.fullmatch(r'fd_mask_(\d+)\.png', p.name)[1]): p
              for p in (runs.vis.vis_data / 'vis_image').iterdir()}
    assert sorted(images) == focused[1::2]

    panel = MIN_PANEL_SIDE  # 32-pixel inputs are drawn 4x
    scale = panel // IMAGE_SIDE
    sources = [np.asarray(Image.open(p).convert('RGB')) for p in sorted(image_folder.glob('*/*.png'))]
    for path in images.values():
        pixels = read_png(path, (3 * panel, 2 * (panel + LABEL_HEIGHT)))
        for row in range(2):  # each "input" panel is one of the training images, un-normalised, in RGB
            top = row * (panel + LABEL_HEIGHT) + LABEL_HEIGHT
            shown = pixels[top:top + panel:scale, 0:panel:scale]
            assert any(np.array_equal(shown, source) for source in sources)
            kept = pixels[top:top + panel, 2 * panel:3 * panel]
            assert not np.array_equal(kept, pixels[top:top + panel, 0:panel])  # dropped positions darkened


@pytest.mark.slow
def test_no_mask_images_when_off(runs):
    assert any(r['fd/active'] == 1 for r in train_records(runs.plain.vis_data))
    assert not (runs.plain.vis_data / 'vis_image').exists()


def test_kept_positions_recovers_the_mask():
    x = torch.randn(3, 6, 7, 7).relu()
    x[2] = -x[2].abs()  # no positive activation: FocusedDropout keeps the whole sample
    mask = focused_mask(x, 0.4)
    assert torch.equal(kept_positions(x, x * mask), mask[:, 0].bool())
    assert kept_positions(x, x * mask)[2].all() and not kept_positions(x, x * mask)[0].all()


@pytest.mark.parametrize('kwargs, field', [
    (dict(interval=-1), 'interval'), (dict(interval=1.5), 'interval'), (dict(interval=0), 'interval'),
    (dict(interval=True), 'interval'), (dict(num_samples=0), 'num_samples')])
def test_vis_parameters_are_validated(kwargs, field):
    with pytest.raises(ValueError, match=field):
        FocusedDropoutVisualizationHook(**kwargs)


@pytest.mark.parametrize('fd_hooks, words', [
    ([], 'needs a FocusedDropoutHook'),
    ([dict(type='FocusedDropoutHook', mode='weight_decay_only')], 'applies no mask to draw')])
def test_vis_hook_needs_a_masking_focused_dropout_hook(image_folder, tmp_path, fd_hooks, words):
    cfg = classifier_cfg(image_folder, tmp_path, max_iters=1, custom_hooks=fd_hooks + [
        dict(type='FocusedDropoutVisualizationHook', interval=1)])
    with pytest.raises(ValueError, match=words):
        Runner.from_cfg(Config(cfg)).train()


# CAM grid ------------------------------------------------------------------------------
def cells(pixels: np.ndarray, cell: int, title: int):
    """{(row, column): image area of the cell} of a vis_cam grid."""
    rows, cols = pixels.shape[0] // (cell + title), pixels.shape[1] // cell
    return {(r, c): pixels[r * (cell + title) + title:(r + 1) * (cell + title), c * cell:(c + 1) * cell]
            for r in range(rows) for c in range(cols)}


@pytest.mark.slow
def test_cam_grid_of_two_classifiers(runs, image_folder, tmp_path):
    images = [image_folder / 'class0' / '0.png', image_folder / 'class1' / '0.png']
    out = tmp_path / 'cam.png'
    proc = run_tool(VIS_CAM, *images, '--model', runs.plain.config, runs.plain.checkpoint,
                    '--model', runs.vis.config, runs.vis.checkpoint, '--labels', 'plain', 'vis',
                    '--method', 'gradcam++', '--cell-size', '64', '--out', out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'wrote {out}' in proc.stdout
    grid = cells(read_png(out, (3 * 64, 2 * (64 + TITLE_PX))), 64, TITLE_PX)
    for row in range(2):  # the CAM columns are overlays, not the plain input
        for column in (1, 2):
            assert np.abs(grid[row, column].astype(int) - grid[row, 0]).mean() > 10


@pytest.mark.slow
def test_cam_grid_of_a_retinanet_backbone(image_folder, tmp_path, capsys):
    config = tmp_path / 'retinanet_r18_tiny.py'
    config.write_text(
        "_base_ = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'\n"
        "custom_imports = dict(imports=['fdrop_mm'], allow_failed_imports=False)\n"
        "model = dict(backbone=dict(init_cfg=None))\n"
        "test_dataloader = dict(dataset=dict(pipeline=[dict(type='LoadImageFromFile'),\n"
        "    dict(type='Resize', scale=(96, 96), keep_ratio=True), dict(type='PackDetInputs')]))\n")
    cfg = Config.fromfile(str(config))
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    detector = MODELS.build(cfg.model)
    detector.init_weights()
    checkpoint = tmp_path / 'retinanet.pth'
    torch.save({'state_dict': detector.state_dict(), 'meta': {}}, checkpoint)

    folder = tmp_path / 'images'
    folder.mkdir()
    for c in range(2):
        (folder / f'{c}.png').write_bytes((image_folder / f'class{c}' / '0.png').read_bytes())
    (folder / 'notes.txt').write_text('not an image: a folder lists only image files')
    out = tmp_path / 'cam_det.png'
    models, labels = [(str(config), str(checkpoint))], ['retinanet']
    cam_grid([str(folder)], models, labels, out, det_topk=5, cell_size=48)
    assert f'wrote {out} (2 images x 1 checkpoints' in capsys.readouterr().out
    read_png(out, (2 * 48, 2 * (48 + TITLE_PX)))

    with pytest.raises(ValueError, match="--target-layer 'backbone.layer9': no such module in RetinaNet"):
        cam_grid([str(folder)], models, labels, tmp_path / 'never.png', target_layer='backbone.layer9')


@pytest.mark.slow
def test_cam_errors_name_the_file(runs, image_folder, tmp_path):
    broken = tmp_path / 'broken.png'
    broken.write_text('not an image')
    image = str(image_folder / 'class0' / '0.png')
    model = (runs.plain.config, runs.plain.checkpoint)
    cases = [([image], (runs.plain.config, str(tmp_path / 'nope.pth')), FileNotFoundError,
              'checkpoint .*nope.pth does not exist'),
             ([image], (str(tmp_path / 'nope.py'), runs.plain.checkpoint), FileNotFoundError,
              'config .*nope.py does not exist'),
             ([str(broken)], model, ValueError, 'cannot read image .*broken.png'),
             ([str(tmp_path / 'missing.png')], model, FileNotFoundError, 'image .*missing.png does not exist')]
    for images, (config, checkpoint), error, message in cases:
        with pytest.raises(error, match=message):
            cam_grid(images, [(config, checkpoint)], ['plain'], tmp_path / 'never.png')
    assert not (tmp_path / 'never.png').exists()


# reference-channel statistics ------------------------------------------------------------
@pytest.mark.slow
def test_reference_channel_histograms_count_the_correct_images(runs, image_folder, tmp_path, mmpretrain_scope):
    proc = run_tool(REF_CHANNEL_STATS, runs.vis.config, runs.vis.checkpoint, '--out-dir', tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert f'wrote {tmp_path / "ref_channels.csv"}' in out and f'wrote {tmp_path / "ref_channels.png"}' in out
    with open(tmp_path / 'ref_channels.csv') as f:
        written = Counter({(int(r['class_index']), int(r['channel'])): int(r['count']) for r in csv.DictReader(f)})

    # independently: mmpretrain's inferencer on the image files, the backbone output hooked
    from mmpretrain.apis import ImageClassificationInferencer
    inferencer = ImageClassificationInferencer(model=runs.vis.config, pretrained=runs.vis.checkpoint, device='cpu')
    features = []
    inferencer.model.backbone.register_forward_hook(lambda module, args, output: features.append(output[-1]))
    files = sorted(image_folder.glob('class*/*.png'))
    predictions = inferencer([str(f) for f in files], batch_size=len(files))
    channels = torch.cat(features).mean(dim=(2, 3)).argmax(dim=1).tolist()
    expected = Counter()
    for path, prediction, channel in zip(files, predictions, channels):
        label = int(path.parent.name.removeprefix('class'))
        if prediction['pred_label'] == label:
            expected[label, channel] += 1
    assert sum(expected.values()) > 0
    assert written == expected  # so the counts add up to the correctly classified images
    assert f'{len(files)} images, {sum(expected.values())} correctly classified, 64 channels' in out
    read_png(tmp_path / 'ref_channels.png', (2 * 300, 220))  # two classes, one row


@pytest.mark.slow
def test_reference_channel_errors(runs, tmp_path):
    with pytest.raises(ValueError, match="--layer 'backbone.nope': no such module"):
        reference_channel_stats(runs.vis.config, runs.vis.checkpoint, tmp_path, layer='backbone.nope')
    with pytest.raises(FileNotFoundError, match='nope.pth does not exist'):
        reference_channel_stats(runs.vis.config, str(tmp_path / 'nope.pth'), tmp_path)


# curves ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_curves_of_two_runs_and_keep_ratio_per_epoch(runs, tmp_path, capsys):
    out = tmp_path / 'curves.png'
    proc = run_tool(PLOT_CURVES, runs.vis.work_dir, runs.plain.work_dir, '--keys', 'loss', 'accuracy/top1',
                    '--labels', 'vis', 'plain', '--out', out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'wrote {out}' in proc.stdout
    read_png(out, (2 * 420, 300))

    keep = tmp_path / 'keep.png'
    plot_curves([runs.vis.work_dir], ['fd/keep_ratio'], ['vis'], keep)
    assert f'wrote {keep}' in capsys.readouterr().out
    read_png(keep, (420, 300))
    per_epoch = defaultdict(list)  # the mean keep ratio of the focused iterations of each epoch
    for r in train_records(runs.vis.vis_data):
        if r['fd/active'] == 1:
            per_epoch[r['epoch']].append(r['fd/keep_ratio'])
    x, y, unit, _ = ScalarLog(runs.vis.work_dir).series('fd/keep_ratio')
    assert unit == 'epoch' and x == sorted(per_epoch)
    assert y == pytest.approx([np.mean(per_epoch[e]) for e in x])


@pytest.mark.slow
def test_curves_error_names_the_log_and_its_keys(runs, tmp_path):
    out = tmp_path / 'never.png'
    with pytest.raises(ValueError) as error:
        plot_curves([runs.plain.work_dir], ['loss', 'pascal_voc/mAP'], ['plain'], out)
    message = str(error.value)
    assert str(runs.plain.vis_data / 'scalars.json') in message and "no scalar 'pascal_voc/mAP'" in message
    assert "'accuracy/top1'" in message and "'loss'" in message and not out.exists()
    with pytest.raises(FileNotFoundError, match='nowhere does not exist'):
        plot_curves([tmp_path / 'nowhere'], ['loss'], ['nowhere'], out)


@pytest.mark.slow
def test_curves_of_an_iteration_based_run(runs, tmp_path):
    """The same records under an iteration-based train_cfg: x is the iteration, and it cannot share
    an axis with an epoch-based run."""
    vis_data = tmp_path / 'iter_run' / '20260101_000000' / 'vis_data'
    vis_data.mkdir(parents=True)
    (vis_data / 'scalars.json').write_text((runs.plain.vis_data / 'scalars.json').read_text())
    (vis_data / 'config.py').write_text("train_cfg = dict(type='IterBasedTrainLoop', max_iters=8)\n")
    x, y, unit, phase = ScalarLog(tmp_path / 'iter_run').series('loss')
    records = train_records(runs.plain.vis_data)
    assert (unit, phase) == ('iteration', 'train') and x == [r['iter'] for r in records]
    assert y == [r['loss'] for r in records]
    with pytest.raises(ValueError, match='loss: the runs do not share an x axis'):
        plot_curves([runs.plain.work_dir, tmp_path / 'iter_run'], ['loss'], ['epochs', 'iterations'],
                    tmp_path / 'never.png')


# scalar logs ------------------------------------------------------------------------------
def write_log(run: Path, timestamp: str, records) -> Path:
    """``<run>/<timestamp>/vis_data/scalars.json`` of ``records`` (dicts, or raw lines)."""
    log = run / timestamp / 'vis_data' / 'scalars.json'
    log.parent.mkdir(parents=True)
    log.write_text(''.join((r if isinstance(r, str) else json.dumps(r)) + '\n' for r in records))
    return log


def test_scalars_of_a_resumed_run_are_one_log(tmp_path):
    """Timestamps in order; the resumed log's records replace the first one's for the same
    iteration or validation step; the ``<timestamp>.json`` stands in for a missing scalars.json."""
    first = write_log(tmp_path, '20260101_000000', [
        dict(iter=1, epoch=1, loss=3.0), dict(iter=2, epoch=1, loss=2.0), '',
        {'accuracy/top1': 10.0, 'step': 1}, dict(iter=3, epoch=2, loss=1.5)])
    second = write_log(tmp_path, '20260102_000000', [
        dict(iter=3, epoch=2, loss=1.0), {'accuracy/top1': 30.0, 'step': 2}])
    third = second.parent.parent.with_name('20260103_000000') / 'vis_data' / '20260103_000000.json'
    third.parent.mkdir(parents=True)
    third.write_text(json.dumps({'accuracy/top1': 40.0, 'step': 2}) + '\n')
    records = read_scalars(tmp_path)
    assert records.files == [first, second, third]
    assert [(r['iter'], r['loss']) for r in records.train] == [(1, 3.0), (2, 2.0), (3, 1.0)]
    assert [(r['step'], r['accuracy/top1']) for r in records.val] == [(1, 10.0), (2, 40.0)]
    assert read_scalars(first).val == [{'accuracy/top1': 10.0, 'step': 1}]


@pytest.mark.parametrize('line, message', [('{"loss": 1', 'not a JSON record'),
                                           ('{"loss": 1.0}', 'not a training'), ('[1, 2]', 'not a training')])
def test_scalars_errors_name_the_file_and_line(tmp_path, line, message):
    log = write_log(tmp_path, '20260101_000000', [dict(iter=1, loss=1.0), line])
    with pytest.raises(ValueError, match=f'{re.escape(str(log))}:2: {message}'):
        read_scalars(tmp_path)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match=r'empty has no \*/vis_data/scalars.json'):
        read_scalars(tmp_path / 'empty')


# command lines ----------------------------------------------------------------------------
@pytest.mark.parametrize('tool, option', [(VIS_CAM, '--method'), (REF_CHANNEL_STATS, '--data-root'),
                                          (PLOT_CURVES, '--keys')])
def test_help(tool, option):
    proc = run_tool(tool, '--help')
    assert proc.returncode == 0 and option in proc.stdout


@pytest.mark.parametrize('tool, args, message', [
    (VIS_CAM, ['missing.png', '--model', 'nope.py', 'nope.pth'], 'error: image missing.png does not exist'),
    (REF_CHANNEL_STATS, ['nope.py', 'nope.pth'], 'error: config nope.py does not exist'),
    (PLOT_CURVES, ['nowhere', '--keys', 'loss'], 'error: log nowhere does not exist')])
def test_tool_errors_exit_1_naming_the_file(tool, args, message, tmp_path):
    proc = run_tool(tool, *args, '--out-dir' if tool == REF_CHANNEL_STATS else '--out', 'never', cwd=tmp_path)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr[-3000:]
    assert not (tmp_path / 'never').exists()
