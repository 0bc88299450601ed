"""The drawing shared by the tiny datasets: class ``k`` is its own shape, fill texture and hue
(:func:`glyph`) on a noisy, randomly tinted background.
"""
import colorsys
import math
import zlib

import numpy as np
from PIL import Image, ImageDraw

JPEG_QUALITY = 95
SHAPES = ('ellipse', 'rectangle', 'triangle', 'diamond', 'cross', 'ring', 'star',
          'hexagon', 'inverted_triangle', 'frame')
TEXTURES = ('solid', 'hstripes', 'vstripes', 'checker')


def glyph(class_index):
    """The (shape, texture, RGB colour) that draws class ``class_index``.

    Shape and texture pairs are unique for the first 40 classes; the hue, stepped by the
    golden ratio, keeps later classes apart too.
    """
    hue = (class_index * 0.6180339887) % 1.0
    colour = tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.85, 0.95))
    texture = TEXTURES[(class_index // len(SHAPES)) % len(TEXTURES)]
    return SHAPES[class_index % len(SHAPES)], texture, colour


def _fit(points, width, height):
    """Scale polygon ``points`` so they touch all four sides of a width x height box."""
    xs, ys = zip(*points)
    sx = (width - 1) / (max(xs) - min(xs))
    sy = (height - 1) / (max(ys) - min(ys))
    return [((x - min(xs)) * sx, (y - min(ys)) * sy) for x, y in points]


def _regular(n, start_deg, radii=(1.0,)):
    """Vertices of a regular n-gon (or star, with two alternating radii) on the unit circle."""
    step = 360 / (n * len(radii))
    return [(radii[i % len(radii)] * math.cos(math.radians(start_deg + i * step)),
             radii[i % len(radii)] * math.sin(math.radians(start_deg + i * step)))
            for i in range(n * len(radii))]


POLYGONS = {
    'triangle': [(0.5, 0), (1, 1), (0, 1)],
    'inverted_triangle': [(0, 0), (1, 0), (0.5, 1)],
    'diamond': [(0.5, 0), (1, 0.5), (0.5, 1), (0, 0.5)],
    'cross': [(1, 0), (2, 0), (2, 1), (3, 1), (3, 2), (2, 2), (2, 3), (1, 3), (1, 2),
              (0, 2), (0, 1), (1, 1)],
    'star': _regular(5, -90, radii=(1.0, 0.42)),
    'hexagon': _regular(6, 0),
}


def shape_mask(shape, width, height):
    """Boolean (height, width) mask of ``shape`` touching all four sides of its box."""
    mask = Image.new('L', (width, height), 0)
    draw = ImageDraw.Draw(mask)
    box = [0, 0, width - 1, height - 1]
    inset = max(2, min(width, height) // 5)
    inner = [inset, inset, width - 1 - inset, height - 1 - inset]
    if shape in ('ellipse', 'ring'):
        draw.ellipse(box, fill=255)
        if shape == 'ring':
            draw.ellipse(inner, fill=0)
    elif shape in ('rectangle', 'frame'):
        draw.rectangle(box, fill=255)
        if shape == 'frame':
            draw.rectangle(inner, fill=0)
    else:
        draw.polygon(_fit(POLYGONS[shape], width, height), fill=255)
    return np.asarray(mask) > 0


def texture_pattern(texture, width, height):
    """Boolean (height, width) pattern: True where the fill takes the bright colour."""
    period = max(2, min(width, height) // 8)
    rows, cols = np.mgrid[0:height, 0:width] // period
    return {'solid': np.ones((height, width), bool),
            'hstripes': rows % 2 == 0,
            'vstripes': cols % 2 == 0,
            'checker': (rows + cols) % 2 == 0}[texture]


def noisy_background(rng, width, height):
    """Float (height, width, 3) canvas: a random grey-ish tint with a soft gradient."""
    base = rng.uniform(60, 190) + rng.normal(0, 15, size=3)
    gradient = np.linspace(-1, 1, width)[None, :, None] * rng.normal(0, 20, size=3)
    return np.broadcast_to(base + gradient, (height, width, 3)).copy()


def paint(canvas, rng, class_index, x0, y0, width, height):
    """Draw class ``class_index`` into ``canvas`` filling the box at (x0, y0) of that size."""
    shape, texture, colour = glyph(class_index)
    bright = np.clip(np.array(colour) + rng.normal(0, 10, size=3), 0, 255)
    fill = np.where(texture_pattern(texture, width, height)[..., None], bright, 0.3 * bright)
    mask = shape_mask(shape, width, height)
    canvas[y0:y0 + height, x0:x0 + width][mask] = fill[mask]


def noisy_pixels(canvas, rng):
    """``canvas`` plus pixel noise, as uint8."""
    pixels = np.clip(canvas + rng.normal(0, 12, size=canvas.shape), 0, 255)
    return pixels.round().astype(np.uint8)


def save_jpeg(canvas, rng, path, grayscale=False):
    """Add pixel noise to ``canvas`` and write it as a JPEG at ``path`` (single-channel if
    ``grayscale``, as some of Tiny ImageNet's images are)."""
    image = Image.fromarray(noisy_pixels(canvas, rng))
    path.parent.mkdir(parents=True, exist_ok=True)
    (image.convert('L') if grayscale else image).save(path, 'JPEG', quality=JPEG_QUALITY)


def split_rng(seed, tag):
    """Generator for one split: depends only on ``seed`` and the split's name ``tag``."""
    return np.random.default_rng([seed, zlib.crc32(tag.encode())])


def write_lines(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(''.join(f'{line}\n' for line in lines))


def object_image(rng, class_index, size):
    """A size x size canvas with one object of class ``class_index``, and its box
    (x0, y0, width, height)."""
    canvas = noisy_background(rng, size, size)
    side = rng.uniform(0.35, 0.8) * size
    aspect = rng.uniform(0.75, 1.33)
    width = int(np.clip(side * math.sqrt(aspect), 8, size))
    height = int(np.clip(side / math.sqrt(aspect), 8, size))
    x0 = int(rng.integers(0, size - width + 1))
    y0 = int(rng.integers(0, size - height + 1))
    paint(canvas, rng, class_index, x0, y0, width, height)
    return canvas, (x0, y0, width, height)
