"""Deterministic drawings for the sample datasets: shape scenes, rendered words, bar charts.

Only PIL's built-in bitmap font is used (no FreeType, no system fonts), so the same Pillow gives the same pixels
on every machine; text is drawn small and scaled up with nearest-neighbour so it stays sharp and legible.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 60),
    "blue": (30, 70, 220),
    "yellow": (235, 200, 20),
    "purple": (140, 50, 170),
    "orange": (245, 130, 20),
    "black": (20, 20, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
BACKGROUND = (245, 245, 240)


@dataclass(frozen=True)
class Shape:
    """One object of a scene: its kind, colour name, centre (fractions of the canvas) and radius in pixels."""

    kind: str
    color: str
    x: float
    y: float
    radius: int = 18


def _font() -> ImageFont.ImageFont:
    """PIL's embedded bitmap font: identical glyphs whatever FreeType or fonts the machine has."""
    return ImageFont.load_default_imagefont()


def shape_scene(shapes: list[Shape], size: int = 160, background: tuple[int, int, int] = BACKGROUND) -> Image.Image:
    """A square canvas with each shape drawn filled in its colour."""
    img = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(img)
    for s in shapes:
        cx, cy, r = round(s.x * size), round(s.y * size), s.radius
        fill = COLORS[s.color]
        if s.kind == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        elif s.kind == "square":
            draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
        elif s.kind == "triangle":
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
        else:
            raise ValueError(f"unknown shape {s.kind!r}; use one of {SHAPES}")
    return img


def text_image(lines: list[str], scale: int = 3, pad: int = 4, fg: tuple[int, int, int] = (15, 15, 15),
               bg: tuple[int, int, int] = (250, 250, 250), border: tuple[int, int, int] | None = None) -> Image.Image:
    """Lines of text on a plain card (a sign, a label): drawn at 1x with the bitmap font, then scaled up."""
    font = _font()
    widths = [font.getbbox(line)[2] for line in lines]
    line_h = 12
    w, h = max(widths) + 2 * pad, line_h * len(lines) + 2 * pad
    small = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(small)
    for i, line in enumerate(lines):
        draw.text((pad, pad + i * line_h), line, font=font, fill=fg)
    if border is not None:
        draw.rectangle((0, 0, w - 1, h - 1), outline=border)
    return small.resize((w * scale, h * scale), Image.Resampling.NEAREST)


def bar_chart(labels: list[str], values: list[float], title: str = "", scale: int = 2) -> Image.Image:
    """A vertical bar chart with the value printed above each bar and the label below it."""
    font = _font()
    bar_w, gap, top, bottom, plot_h = 22, 12, 26, 16, 90
    w = gap + len(labels) * (bar_w + gap)
    h = top + plot_h + bottom
    small = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(small)
    if title:
        draw.text((gap, 2), title, font=font, fill=(0, 0, 0))
    vmax = max(values) or 1.0
    palette = list(COLORS.values())
    for i, (label, value) in enumerate(zip(labels, values)):
        x0 = gap + i * (bar_w + gap)
        bar_h = round(plot_h * value / vmax)
        y0 = top + plot_h - bar_h
        draw.rectangle((x0, y0, x0 + bar_w, top + plot_h), fill=palette[i % len(palette)])
        draw.text((x0, y0 - 11), _fmt(value), font=font, fill=(0, 0, 0))
        draw.text((x0, top + plot_h + 3), label, font=font, fill=(0, 0, 0))
    draw.line((gap // 2, top + plot_h, w - gap // 2, top + plot_h), fill=(0, 0, 0))
    return small.resize((w * scale, h * scale), Image.Resampling.NEAREST)


def _fmt(value: float) -> str:
    """A chart label: integers without a decimal point."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def png_bytes(img: Image.Image) -> bytes:
    """PNG-encode with fixed settings (no timestamp or text chunks), so equal pixels give equal bytes."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=9)
    return buf.getvalue()
