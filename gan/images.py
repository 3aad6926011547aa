"""Image grids: many uint8 (28, 28) images tiled into one picture, saved as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

GRID_BACKGROUND = 64  # dark grey lines between the white-on-black digits


def make_grid(images: np.ndarray, rows: int, cols: int, pad: int = 2, scale: int = 1) -> np.ndarray:
    """uint8 (N, H, W) with N >= rows * cols -> uint8 grid (rows*(H+pad)+pad, cols*(W+pad)+pad),
    each pixel repeated `scale` times in both directions (nearest-neighbour upscaling)."""
    count, height, width = images.shape
    if count < rows * cols:
        raise ValueError(f"a {rows}x{cols} grid needs {rows * cols} images, got {count}")
    grid = np.full(
        (rows * (height + pad) + pad, cols * (width + pad) + pad), GRID_BACKGROUND, np.uint8
    )
    for index in range(rows * cols):
        top = pad + (index // cols) * (height + pad)
        left = pad + (index % cols) * (width + pad)
        grid[top : top + height, left : left + width] = images[index]
    return grid.repeat(scale, axis=0).repeat(scale, axis=1)


def save_png(grid: np.ndarray, path: str | Path) -> None:
    """Writes a uint8 (H, W) greyscale picture as a PNG file."""
    Image.fromarray(grid).save(path)  # uint8 2-D -> mode "L"
