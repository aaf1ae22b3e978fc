"""The small parts that the larger tests use only through others: image
grids, micro-batch accumulation, and the summary writer on a worker."""

import numpy as np
import pytest
import tensorflow as tf

from vnca_tf.data.pictures import image_grid
from vnca_tf.training.microbatches import accumulate
from vnca_tf.training.summaries import Writer


def test_an_image_grid_places_each_image_and_fills_the_rest_white():
    images = np.stack([np.full((2, 3, 1), value, np.float32) for value in (0.0, 0.25, 0.5)])
    grid = image_grid(images, columns=2, border=1).numpy()
    assert grid.shape == (2 * 3 + 1, 2 * 4 + 1, 1)
    np.testing.assert_array_equal(grid[1:3, 1:4], 0.0)  # Row 0, column 0.
    np.testing.assert_array_equal(grid[1:3, 5:8], 0.25)  # Row 0, column 1.
    np.testing.assert_array_equal(grid[4:6, 1:4], 0.5)  # Row 1, column 0.
    np.testing.assert_array_equal(grid[4:6, 5:8], 1.0)  # The missing fourth: white.
    np.testing.assert_array_equal(grid[0], 1.0)  # Borders: white.
    np.testing.assert_array_equal(grid[:, 4], 1.0)


@pytest.mark.parametrize("parts", [1, 2, 4])
def test_micro_batches_add_up_to_the_whole_batch(parts):
    weights = tf.Variable([[1.0, -2.0], [0.5, 3.0]])
    inputs = tf.reshape(tf.range(16, dtype=tf.float32), [8, 2]) / 8

    def loss_and_gradients(index, rows):
        del index
        with tf.GradientTape() as tape:
            outputs = rows @ weights
            loss = tf.reduce_sum(outputs**2)
        return tape.gradient(loss, [weights]), loss, outputs

    gradients, loss, outputs = tf.function(accumulate)(loss_and_gradients, [inputs], parts)
    whole_gradients, whole_loss, whole_outputs = loss_and_gradients(0, inputs)
    np.testing.assert_allclose(gradients[0], whole_gradients[0], rtol=1e-6)
    np.testing.assert_allclose(loss, whole_loss, rtol=1e-6)
    np.testing.assert_allclose(outputs, whole_outputs, rtol=1e-6)  # In the batch's order.


def test_a_worker_other_than_the_chief_writes_no_summary(tmp_path):
    writer = Writer(str(tmp_path), enabled=False)
    writer.flush()
    assert list(tmp_path.iterdir()) == []
    Writer(str(tmp_path), enabled=True).flush()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train", "validation"]
