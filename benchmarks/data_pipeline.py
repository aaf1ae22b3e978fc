"""Images per second of the input pipelines (not a test).

    python benchmarks/data_pipeline.py --data_dir=../shared/data [--json=out.json]

For each dataset: the first pass (read, decode, preprocess, fill the cache; it
happens once, inside data.load_split) and the steady state a training run sees
(cached, shuffled, repeated, batches of 32, prefetched).
"""

import json
import time

from absl import app, flags

from vnca_tf import data

CASES = (
    ("binarized_mnist", "train+validation", 32),
    ("mnist", "train", 32),
    ("celeb_a", "train", 64),
    ("noto_emoji", "train", 64),
)


def measure(name, split, size, data_dir=None, batch_size=32, num_batches=2000):
    """First-pass and steady-state images/s of one dataset's pipeline."""
    start = time.perf_counter()
    dataset = data.load_split(
        name,
        split,
        data_dir=data_dir,
        image_size=size,
        batch_size=batch_size,
        shuffle_seed=0,
        repeat=True,
        drop_remainder=True,
    )
    first_pass = time.perf_counter() - start
    num_images = int(data.load_split(name, split, data_dir=data_dir, image_size=size).cardinality())
    iterator = iter(dataset)
    for _ in range(20):  # Warm-up: fill the shuffle buffer and prefetch.
        next(iterator)
    start = time.perf_counter()
    for _ in range(num_batches):
        next(iterator)
    steady = num_batches * batch_size / (time.perf_counter() - start)
    return {
        "dataset": name,
        "split": split,
        "image_size": size,
        "images": num_images,
        "first_pass_images_per_s": num_images / first_pass,
        "steady_images_per_s": steady,
    }


def main(argv):
    del argv
    results = [
        measure(*case, FLAGS.data_dir, FLAGS.batch_size, FLAGS.num_batches) for case in CASES
    ]
    print(f"{'dataset':<16}{'images':>8}{'first pass img/s':>18}{'steady img/s':>14}")
    for r in results:
        print(
            f"{r['dataset']:<16}{r['images']:>8}{r['first_pass_images_per_s']:>18,.0f}"
            f"{r['steady_images_per_s']:>14,.0f}"
        )
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    flags.DEFINE_string("data_dir", None, "Folder of the original dataset files.")
    flags.DEFINE_integer("batch_size", 32, "Batch size of the steady-state pipeline.")
    flags.DEFINE_integer("num_batches", 2000, "Batches timed in the steady state.")
    flags.DEFINE_string("json", None, "Also write the results to this JSON file.")
    FLAGS = flags.FLAGS
    app.run(main)
