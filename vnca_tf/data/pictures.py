"""Image grids for TensorBoard and figures."""

import tensorflow as tf


def image_grid(images, columns: int, border: int = 1):
    """Tiles images (N, H, W, C) in [0, 1] into one (rows*(H+b)+b, ..., C) grid
    with ``border`` white pixels between them; missing cells stay white."""
    images = tf.convert_to_tensor(images, tf.float32)
    count, height, width, channels = images.shape
    rows = -(-count // columns)
    padding = rows * columns - count
    images = tf.concat([images, tf.ones([padding, height, width, channels])], 0)
    images = tf.pad(images, [[0, 0], [border, 0], [border, 0], [0, 0]], constant_values=1.0)
    images = tf.reshape(images, [rows, columns, height + border, width + border, channels])
    grid = tf.reshape(
        tf.transpose(images, [0, 2, 1, 3, 4]),
        [rows * (height + border), columns * (width + border), channels],
    )
    return tf.pad(grid, [[0, border], [0, border], [0, 0]], constant_values=1.0)
