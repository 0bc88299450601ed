"""Pictures of what FocusedDropout does (issues 6, 14): the hook's live mask images, the CAM grid,
reference-channel histograms and curves (fdrop_mm.visualization and the tools that draw them),
rendered from tiny CPU runs made here; and their one look (fdrop_mm.visualization.style): panels
of at least 200 px, text measured by the renderer inside its panel and the figure, long names
shortened at separators only, a colour bar or legend wherever colours mean something."""
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
from fdrop_mm.visualization import kept_positions, mask_figure
from fdrop_mm.visualization.cam import cam_grid
from fdrop_mm.visualization.curves import ScalarLog, plot_curves
from fdrop_mm.visualization.ref_channels import reference_channel_stats
from fdrop_mm.visualization.scalars import read_scalars
from fdrop_mm.visualization.style import (ELLIPSIS, FONT_PT, MIN_PANEL_PX, PANEL_PX, check_layout, fit_line,
                                          new_figure, save_figure, shorten, split_after_separators,
                                          text_width_px)
from tests.conftest import REPO, classifier_cfg, run_tool

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


def assert_readable(path: Path, layout, min_panel=(MIN_PANEL_PX, MIN_PANEL_PX)) -> np.ndarray:
    """The PNG at ``path`` is the figure ``layout`` measured: its panels at least ``min_panel``
    pixels, every text (measured by the renderer) inside it. Returns its pixels."""
    pixels = read_png(path, layout.size)
    width, height = layout.size
    assert layout.panels and all(x1 - x0 >= min_panel[0] - 0.5 and y1 - y0 >= min_panel[1] - 0.5
                                 for x0, y0, x1, y1 in layout.panels), layout.panels
    for text, (x0, y0, x1, y1) in layout.texts:
        assert x0 >= -0.5 and y0 >= -0.5 and x1 <= width + 0.5 and y1 <= height + 0.5, (text, width, height)
    return pixels


def crop(pixels: np.ndarray, box) -> np.ndarray:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return pixels[y0:y1, x0:x1]


def captions_under_panels(layout, ncols: int):
    """{(row, column): caption texts} of an image grid: the texts between a panel's bottom and the
    next row's top, asserted to lie within the panel's width."""
    rows = [layout.panels[i:i + ncols] for i in range(0, len(layout.panels), ncols)]
    found = {}
    for r, row in enumerate(rows):
        bottom = row[0][3]
        below = rows[r + 1][0][1] if r + 1 < len(rows) else layout.size[1]
        for c, (x0, _, x1, _) in enumerate(row):
            texts = [(t, box) for t, box in layout.texts if box[1] >= bottom - 0.5 and box[3] <= below
                     and x0 - 0.5 <= (box[0] + box[2]) / 2 <= x1 + 0.5]
            for text, box in texts:
                assert box[0] >= x0 - 0.5 and box[2] <= x1 + 0.5, f'caption {text!r} wider than its panel'
            found[r, c] = [t for t, _ in texts]
    return found


# the shared look (style) ------------------------------------------------------------------
def test_shorten_cuts_only_after_separators_keeping_the_end():
    name = 'ILSVRC2012_val_00000001.JPEG'
    assert split_after_separators(name) == ['ILSVRC2012_', 'val_', '00000001.', 'JPEG']
    assert shorten(name, lambda t: True) == name
    # by characters: the longest head + ... + tail of whole parts keeping both ends, else the end
    assert shorten(name, lambda t: len(t) <= 26) == 'ILSVRC2012_' + ELLIPSIS + '00000001.JPEG'
    assert shorten(name, lambda t: len(t) <= 20) == 'ILSVRC2012_val_' + ELLIPSIS + 'JPEG'
    assert shorten(name, lambda t: len(t) <= 18) == 'ILSVRC2012_' + ELLIPSIS + 'JPEG'
    assert shorten(name, lambda t: len(t) <= 15) == ELLIPSIS + '00000001.JPEG'
    assert shorten(name, lambda t: len(t) <= 4) is None and shorten('oneword', lambda t: len(t) < 7) is None
    run = 'work_dirs/pipeline_tiny/seed0/pretrain_baseline'
    assert shorten(run, lambda t: len(t) <= 30) == 'work_' + ELLIPSIS + 'seed0/pretrain_baseline'
    # 34 characters either way: 'work_dirs/...seed0/pretrain_baseline' loses to the longer tail
    assert shorten(run, lambda t: len(t) <= 34) == 'work_' + ELLIPSIS + 'tiny/seed0/pretrain_baseline'
    shark = 'great white shark, white shark, man-eater, man-eating shark, Carcharodon carcharias'
    assert shorten(shark, lambda t: len(t) <= 40) == 'great ' + ELLIPSIS + 'shark, Carcharodon carcharias'


def test_fit_line_measures_the_text_and_never_splits_a_word():
    long_name = 'a_very_long_file_name_from_some_validation_set_ILSVRC2012_val_00000001.JPEG'
    line, size = fit_line(long_name, PANEL_PX, FONT_PT['caption'])
    assert size == FONT_PT['caption'] and ELLIPSIS in line and line.endswith('_00000001.JPEG')
    assert text_width_px(line, size) <= PANEL_PX < text_width_px(long_name, size)
    head, tail = line.split(ELLIPSIS)
    parts = split_after_separators(long_name)
    assert head and head in [''.join(parts[:i]) for i in range(len(parts))]
    assert tail in [''.join(parts[-i:]) for i in range(1, len(parts))]
    word = 'x' * 45  # one word wider than the panel: drawn smaller, not cut
    line, size = fit_line(word, PANEL_PX, FONT_PT['caption'])
    assert line == word and size < FONT_PT['caption'] and text_width_px(word, size) <= PANEL_PX
    with pytest.raises(ValueError, match='a word of it is wider than 200 px'):
        fit_line('W' * 200, 200, FONT_PT['caption'])


def test_a_figure_with_text_outside_is_refused(tmp_path):
    fig = new_figure(300, 100)
    fig.text(0.5, 0.5, 'inside', ha='center')
    assert [t for t, _ in check_layout(fig).texts] == ['inside']
    fig.text(0.9, 0.5, 'this text runs off the right edge')
    with pytest.raises(ValueError, match=r"draws outside itself .*'this text runs off the right edge'"):
        save_figure(fig, tmp_path / 'never.png')
    assert not (tmp_path / 'never.png').exists()


# live mask pictures (FocusedDropoutVisualizationHook) ----------------------------------
@pytest.mark.slow
def test_live_mask_images_every_second_focused_iteration(runs, image_folder):
    focused = [r['iter'] for r in train_records(runs.vis.vis_data) if r['fd/active'] == 1]
    assert len(focused) >= 2
    images = {int(re.fullmatch(r'fd_mask_(\d+)\.png', p.name)[1]): p
              for p in (runs.vis.vis_data / 'vis_image').iterdir()}
    assert sorted(images) == focused[1::2]

    # the picture's geometry depends only on the shapes: 2 samples of 32x32 inputs
    features = torch.rand(2, 64, 8, 8)
    layout = check_layout(mask_figure(np.zeros((2, IMAGE_SIDE, IMAGE_SIDE, 3), np.uint8), features, features,
                                      'FocusedDropout at backbone.layer3, iteration 1'))
    assert layout.colorbars == 1 and layout.legends == 1  # the heat map's colours and the darkened positions
    scale = PANEL_PX // IMAGE_SIDE  # 32-pixel inputs are drawn 8x
    sources = [np.asarray(Image.open(p).convert('RGB')) for p in sorted(image_folder.glob('*/*.png'))]
    for path in images.values():
        pixels = assert_readable(path, layout)
        for row in range(2):  # each "input" panel is one of the training images, un-normalised, in RGB
            inputs, _, kept = (crop(pixels, box) for box in layout.panels[3 * row:3 * row + 3])
            shown = inputs[scale // 2::scale, scale // 2::scale]
            assert any(np.array_equal(shown, source) for source in sources)
            assert not np.array_equal(kept, inputs)  # dropped positions darkened


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


def test_the_documented_live_mask_command_uses_a_config_with_both_hooks():
    """docs/pictures.md trains the live pictures from a config: mmengine's --cfg-options cannot
    parse a list of dict(...) hooks. Its FocusedDropoutHook is the tiny FD run's."""
    command = re.search(r'python tools/train.py (\S+) --work-dir work_dirs/vis_live_tiny',
                        (REPO / 'docs' / 'pictures.md').read_text())
    assert command, 'docs/pictures.md: no live-mask training command'
    live = Config.fromfile(str(REPO / command[1]))
    fd_run = Config.fromfile(str(REPO / 'configs/tiny/resnet50_fd_tiny-imagenet.py'))
    assert [h['type'] for h in live.custom_hooks] == ['FocusedDropoutHook', 'FocusedDropoutVisualizationHook']
    assert live.custom_hooks[0] == fd_run.custom_hooks[0]


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
@pytest.mark.slow
def test_cam_grid_of_two_classifiers(runs, image_folder, tmp_path):
    long_name = tmp_path / 'a_very_long_file_name_from_some_validation_set_ILSVRC2012_val_00000001.png'
    long_name.write_bytes((image_folder / 'class1' / '0.png').read_bytes())
    images = [image_folder / 'class0' / '0.png', long_name]
    out = tmp_path / 'cam.png'
    proc = run_tool(VIS_CAM, *images, '--model', runs.plain.config, runs.plain.checkpoint,
                    '--model', runs.vis.config, runs.vis.checkpoint, '--labels', 'plain', 'vis',
                    '--method', 'gradcam++', '--out', out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'wrote {out}' in proc.stdout
    # the same grid drawn by the library, measured: 2 rows x (input + 2 maps) of 256-px panels
    layout = cam_grid([str(i) for i in images], [(runs.plain.config, runs.plain.checkpoint),
                                                 (runs.vis.config, runs.vis.checkpoint)],
                      ['plain', 'vis'], tmp_path / 'cam_again.png', method='gradcam++')
    assert len(layout.panels) == 6 and all(round(x1 - x0) == PANEL_PX for x0, _, x1, _ in layout.panels)
    assert layout.colorbars == 1  # the maps' colours read low to high
    pixels = assert_readable(out, layout)
    cells = [crop(pixels, box) for box in layout.panels]
    for row in range(2):  # the CAM columns are overlays, not the plain input
        for column in (1, 2):
            assert np.abs(cells[3 * row + column].astype(int) - cells[3 * row]).mean() > 10
    captions = captions_under_panels(layout, 3)
    assert captions[0, 0] == ['0.png']
    shortened, _ = fit_line(long_name.name, PANEL_PX, FONT_PT['caption'])
    assert captions[1, 0] == [shortened] and ELLIPSIS in shortened and shortened.endswith('_00000001.png')
    for row in range(2):
        for column in (1, 2):  # the explained class and its probability, whole
            name, probability = captions[row, column]
            assert name in ('class0', 'class1') and re.fullmatch(r'\d+%', probability)
    titles = [t for t, box in layout.texts if box[3] <= layout.panels[0][1]]
    assert titles == ['Grad-CAM++ on backbone.layer4', 'under each map: the explained class and its softmax '
                      'probability', 'input', 'plain', 'vis']


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
    layout = cam_grid([str(folder)], models, labels, out, det_topk=5, cell_size=MIN_PANEL_PX)
    assert f'wrote {out} (2 images x 1 checkpoints' in capsys.readouterr().out
    assert_readable(out, layout)
    assert len(layout.panels) == 4
    topk, total = captions_under_panels(layout, 2)[0, 1]
    assert topk == 'top-5 logits' and re.fullmatch(r'sum -?\d+\.\d', total)

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
    # the same histograms drawn by the library, measured: two classes in one row, whole titles
    layout = reference_channel_stats(runs.vis.config, runs.vis.checkpoint, tmp_path / 'again')
    drawn = assert_readable(tmp_path / 'ref_channels.png', layout)
    assert np.array_equal(drawn, read_png(tmp_path / 'again' / 'ref_channels.png', layout.size))
    assert len(layout.panels) == 2 and layout.legends == 0  # one colour, one meaning: no legend
    texts = [t for t, _ in layout.texts]
    for label in (0, 1):
        counts = {channel: n for (c, channel), n in expected.items() if c == label}
        leaders = [channel for channel, n in counts.items() if n == max(counts.values())]
        top = ('' if not counts else f', most often channel {leaders[0]}' if len(leaders) == 1
               else f', {len(leaders)} channels tie at {max(counts.values())}')
        assert f'class{label}\n{sum(counts.values())} images{top}' in texts


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
    layout = plot_curves([runs.vis.work_dir, runs.plain.work_dir], ['loss', 'accuracy/top1'], ['vis', 'plain'],
                         tmp_path / 'again.png')
    assert_readable(out, layout)
    assert len(layout.panels) == 2 and layout.legends == 1  # the colours name the runs
    texts = [t for t, _ in layout.texts]
    assert {'loss\ntrain, mean per epoch', 'accuracy/top1\nval', 'vis', 'plain'} <= set(texts)

    keep = tmp_path / 'keep.png'
    long_label = 'a run label far longer than the plot is wide, from ' + str(runs.vis.work_dir)
    layout = plot_curves([runs.vis.work_dir], ['fd/keep_ratio'], [long_label], keep)
    assert f'wrote {keep}' in capsys.readouterr().out
    assert_readable(keep, layout)
    entry = [t for t, _ in layout.texts if ELLIPSIS in t]
    assert len(entry) == 1 and entry[0].endswith(runs.vis.work_dir.name) and entry[0].startswith('a run ')
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
def test_tool_errors_exit_2_naming_the_file(tool, args, message, tmp_path):
    proc = run_tool(tool, *args, '--out-dir' if tool == REF_CHANNEL_STATS else '--out', 'never', cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-3000:]
    assert not (tmp_path / 'never').exists()
