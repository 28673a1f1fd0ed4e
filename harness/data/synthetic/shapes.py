"""Drawing primitives shared by the synthetic generators: textured shapes on cluttered backgrounds."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "hexagon", "diamond", "arrow", "crescent")


def shape_polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Vertices of a (rotated) polygonal shape of radius ``r``; round shapes are sampled finely."""

    def ring(n: int, radius: float, phase: float = 0.0) -> list[tuple[float, float]]:
        return [(radius * math.cos(phase + 2 * math.pi * k / n), radius * math.sin(phase + 2 * math.pi * k / n)) for k in range(n)]

    if shape in ("circle", "ring"):
        pts = ring(32, r)
    elif shape == "square":
        pts = ring(4, r, math.pi / 4)
    elif shape == "triangle":
        pts = ring(3, r, -math.pi / 2)
    elif shape == "hexagon":
        pts = ring(6, r)
    elif shape == "diamond":
        pts = [(0, -r), (0.6 * r, 0), (0, r), (-0.6 * r, 0)]
    elif shape == "star":
        outer, inner = ring(5, r, -math.pi / 2), ring(5, 0.45 * r, -math.pi / 2 + math.pi / 5)
        pts = [p for pair in zip(outer, inner) for p in pair]
    elif shape == "cross":
        a = 0.33 * r
        pts = [(-a, -r), (a, -r), (a, -a), (r, -a), (r, a), (a, a), (a, r), (-a, r), (-a, a), (-r, a), (-r, -a), (-a, -a)]
    elif shape == "arrow":
        pts = [(-r, -0.3 * r), (0.2 * r, -0.3 * r), (0.2 * r, -0.7 * r), (r, 0), (0.2 * r, 0.7 * r), (0.2 * r, 0.3 * r), (-r, 0.3 * r)]
    elif shape == "crescent":
        outer = [(r * math.cos(t), r * math.sin(t)) for t in np.linspace(-2.2, 2.2, 20)]
        inner = [(0.35 * r + 0.75 * r * math.cos(t), 0.75 * r * math.sin(t)) for t in np.linspace(1.9, -1.9, 20)]
        pts = outer + inner
    else:
        raise ValueError(f"unknown shape {shape!r}")
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in pts]


def random_color(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, size=3))


def background(rng: np.random.Generator, size: int) -> Image.Image:
    """A smooth colour gradient with pixel noise."""
    c0, c1 = np.array(random_color(rng, 40, 220), float), np.array(random_color(rng, 40, 220), float)
    t = np.linspace(0, 1, size)[None, :, None]
    if rng.random() < 0.5:
        t = t.transpose(1, 0, 2)
    img = c0 * (1 - t) + c1 * t
    img = np.broadcast_to(img, (size, size, 3)) + rng.normal(0, 12, (size, size, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def texture_fill(rng: np.random.Generator, size: int, kind: int, base_color=None) -> Image.Image:
    """A colour texture to paint a shape with: flat, stripes, checks or dots (``kind`` 0..3).

    ``base_color`` fixes the texture's main colour (default: random)."""
    a = np.array(random_color(rng) if base_color is None else base_color)
    b = np.array(random_color(rng))
    yy, xx = np.mgrid[0:size, 0:size]
    period = rng.integers(3, 7)
    if kind == 1:
        theta = rng.uniform(0, math.pi)
        mask = (np.sin((xx * math.cos(theta) + yy * math.sin(theta)) * 2 * math.pi / period) > 0)
    elif kind == 2:
        mask = ((xx // period + yy // period) % 2) == 0
    elif kind == 3:
        mask = ((xx % period) < 2) & ((yy % period) < 2)
    else:
        mask = np.ones((size, size), bool)
    img = np.where(mask[..., None], a, b)
    return Image.fromarray(img.astype(np.uint8))


def paste_shape(canvas: Image.Image, shape: str, cx: float, cy: float, r: float, angle: float,
                rng: np.random.Generator) -> Image.Image:
    """Paint a textured shape onto ``canvas`` (in place) and return its binary mask as an L image."""
    mask = shape_mask(shape, cx, cy, r, angle, canvas.size)
    paint_texture(canvas, mask, rng)
    return mask


def shape_mask(shape: str, cx: float, cy: float, r: float, angle: float, size: tuple[int, int]) -> Image.Image:
    """The binary mask (L image, 0/255) of a rotated shape; draws nothing and uses no randomness."""
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    draw.polygon(shape_polygon(shape, cx, cy, r, angle), fill=255)
    if shape == "ring":
        draw.polygon(shape_polygon("circle", cx, cy, 0.55 * r, angle), fill=0)
    return mask


def paint_texture(canvas: Image.Image, mask: Image.Image, rng: np.random.Generator, kind: int | None = None,
                  base_color=None) -> None:
    """Paint a colour texture onto ``canvas`` (in place) where ``mask`` is set (random kind/colour by default)."""
    kind = int(rng.integers(0, 4)) if kind is None else kind
    canvas.paste(texture_fill(rng, canvas.size[0], kind, base_color), (0, 0), mask)


def add_clutter(canvas: Image.Image, rng: np.random.Generator, count: int, max_r: float) -> None:
    """Small distractor strokes and blobs that belong to no class."""
    draw = ImageDraw.Draw(canvas)
    size = canvas.size[0]
    for _ in range(count):
        x, y = rng.uniform(0, size, 2)
        r = rng.uniform(1, max_r)
        if rng.random() < 0.5:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=random_color(rng))
        else:
            x2, y2 = x + rng.uniform(-3 * r, 3 * r), y + rng.uniform(-3 * r, 3 * r)
            draw.line([x, y, x2, y2], fill=random_color(rng), width=int(rng.integers(1, 3)))
