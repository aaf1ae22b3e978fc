"""Where a training step's time goes: a tf.profiler trace and its op table.

    pip install xprof   # the profiler's converter (also TensorBoard's profile tab)
    python benchmarks/profile_step.py --data_dir=../shared/data --preset=mnist \
        --batch=8 --precision=mixed_bfloat16 --logdir=/tmp/vnca_profile

Runs two warm-up steps, profiles --steps steps with tf.profiler, and prints the
op types that take the most self-time (host CPU ops). The trace stays in
--logdir for `tensorboard --logdir=...` (Profile tab).
"""

import collections
import glob
import json
import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmark import preset_and_images, training_step  # noqa: E402  (defines --data_dir)

flags.DEFINE_string("preset", "mnist", "Preset to profile.")
flags.DEFINE_integer("batch", 8, "Batch size.")
flags.DEFINE_enum("precision", "mixed_bfloat16", ["float32", "mixed_bfloat16"], "Precision.")
flags.DEFINE_bool("recompute", False, "Per-step recomputation.")
flags.DEFINE_integer("steps", 2, "Profiled steps.")
flags.DEFINE_integer("top", 15, "Op types to print.")
flags.DEFINE_string("logdir", "/tmp/vnca_profile", "Where the trace goes.")
FLAGS = flags.FLAGS


def op_type_table(logdir):
    """[(op type, self-time us, share of the busy time)] from the newest trace
    in logdir."""
    from xprof.convert import raw_to_tool_data

    xspace = sorted(glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")))
    data, _ = raw_to_tool_data.xspace_to_tool_data([xspace[-1]], "framework_op_stats", {})
    tables = json.loads(data)
    table = tables[0] if isinstance(tables, list) else tables
    columns = [c["id"] for c in table["cols"]]
    rows = [
        dict(zip(columns, [cell["v"] if cell else None for cell in r["c"]], strict=False))
        for r in table["rows"]
    ]
    by_type = collections.Counter()
    for row in rows:
        if row.get("host_or_device") in (None, "Host") and row["type"] != "IDLE":
            by_type[row["type"]] += row["total_self_time"]
    total = sum(by_type.values())
    return [(name, t, t / total) for name, t in by_type.most_common()]


def main(argv):
    del argv
    import tensorflow as tf

    preset, images = preset_and_images(FLAGS.preset, FLAGS.batch, FLAGS.data_dir)
    _, step = training_step(preset, images, FLAGS.precision, FLAGS.recompute)
    step(), step()  # Warm-up.
    tf.profiler.experimental.start(FLAGS.logdir)
    for _ in range(FLAGS.steps):
        step()
    tf.profiler.experimental.stop()
    print(f"{FLAGS.preset}, batch {FLAGS.batch}, {FLAGS.precision}: self-time by op type")
    for name, micros, share in op_type_table(FLAGS.logdir)[: FLAGS.top]:
        print(f"{name:<32} {micros / 1e6 / FLAGS.steps:8.3f} s/step {100 * share:6.1f} %")


if __name__ == "__main__":
    app.run(main)
