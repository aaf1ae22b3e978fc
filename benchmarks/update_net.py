"""What the NCA's update network alone costs in a training step (not a test).

    python benchmarks/update_net.py --preset=mnist --batch=32 --precision=mixed_bfloat16

A doubling VNCA's training step applies its update network steps_per_stage
times on every grid size (2x2 ... 32x32 for mnist), forward and backward. This
times one forward + backward of the update network (gradients for the cells and
the weights) on each grid size on its own, after warm-up, and sums them as the
step does: the time a step would take if it did nothing but its update networks,
each as fast as alone. Compare it with the step's time from benchmark.py; the
difference is everything else (encoder, likelihood, loops, gradient sums, Adam).
"""

import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmark import _timed  # noqa: E402  (defines --repeats)

flags.DEFINE_string("preset", "mnist", "A doubling VNCA preset.")
flags.DEFINE_integer("batch", 32, "Images per step.")
flags.DEFINE_enum(
    "precision",
    "mixed_bfloat16",
    ["float32", "mixed_bfloat16"],
    "The update network's compute precision.",
)
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import tensorflow as tf

    from vnca_tf import configs
    from vnca_tf.configs import INITIAL_SIDE
    from vnca_tf.models import build_model

    config = configs.get_preset(FLAGS.preset).model
    kind = configs.kind_of(config)
    if not kind.schedule().get("doubles_after"):
        raise app.UsageError(f"{FLAGS.preset} is a {kind.describe()}, not a doubling VNCA.")
    net = build_model(config, FLAGS.precision).update_net
    # Multiply-adds per cell: one per convolution weight (biases aside).
    macs = sum(int(tf.size(v)) for v in net.trainable_variables if len(v.shape) == 4)

    @tf.function
    def forward_backward(cells, output_gradient):
        with tf.GradientTape() as tape:
            tape.watch(cells)
            update = net(cells)
        return tape.gradient(
            update,
            [cells, *net.trainable_variables],
            output_gradients=tf.cast(output_gradient, update.dtype),
        )

    total = 0.0
    print(
        f"{FLAGS.preset}, batch {FLAGS.batch}, {FLAGS.precision}: update network "
        f"forward + backward, {macs:,} multiply-adds per cell"
    )
    for stage in range(config.num_doublings + 1):
        side = INITIAL_SIDE * 2**stage
        shape = [FLAGS.batch, side, side, config.latent_size]
        cells, gradient = tf.random.normal(shape), tf.random.normal(shape)
        timing = _timed(
            lambda c=cells, g=gradient: [t.numpy() for t in forward_backward(c, g)],
            FLAGS.repeats,
        )
        seconds = timing["median_s"]
        flops = 3 * 2 * macs * FLAGS.batch * side * side  # Forward, two gradients.
        total += config.steps_per_stage * seconds
        print(
            f"  {side:3d}x{side:<3d} {seconds * 1e3:9.1f} ms  {flops / seconds / 1e9:6.0f} "
            f"GFLOP/s  x {config.steps_per_stage} steps"
        )
    print(
        f"  sum over the step's {config.steps_per_stage * (config.num_doublings + 1)} "
        f"update steps: {total:.2f} s"
    )


if __name__ == "__main__":
    app.run(main)
