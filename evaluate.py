"""Measures a trained model the way the paper does, and draws its figures.

    python evaluate.py --model_dir=runs/mnist                   # IWAE-128 on the test set
    python evaluate.py --model_dir=runs/mnist --figures=all --skip_likelihood
    python evaluate.py --model_dir=runs/mnist --max_examples=1000 --checkpoint=best

Writes OUTPUT_DIR/results.json (log-likelihood in nats per image and bits per
dimension of the dataset's own images, standard error; what was measured: the
dataset and split read, k, the model and checkpoint, the overrides; how: the
subset and its seed, batch and chunk sizes, the data's source; the training
record: steps, wall time, train.py command, precision; and for non-doubling
VNCAs how well they regrow after damage) and one PNG per figure
(reconstructions, samples, growth, interpolations, tsne, damage_recovery,
damage_during_growth). A subset (--max_examples) and the figures' images are
seeded draws from the whole split, never its first images; every image's
importance samples come from --seed and its index in the split, so the number
does not depend on --batch_size or --chunk_size.

The model fields that keep a trained model's weights
(configs.WEIGHT_KEEPING_FIELDS: the step counts, the update rate, the bins'
convention) can be changed for the measurement, e.g. --config.model.max_steps=128 or
--config.model.likelihood_convention=exact (recorded in results.json's
"overrides"); any other is refused, as are weights that do not fit one to one.
"""

import os
import time

from absl import app, flags, logging

from vnca_tf import configs
from vnca_tf.common import cli
from vnca_tf.configs import overrides

flags.DEFINE_string("model_dir", None, "A training folder written by train.py.")
flags.DEFINE_string(
    "saved_model", None, "Or: an exported SavedModel version folder (e.g. saved_models/mnist/1)."
)
flags.DEFINE_enum("checkpoint", "latest", list(configs.CHECKPOINTS), "Which checkpoint to use.")
flags.DEFINE_string(
    "split",
    None,
    "The split to evaluate (default: the one the paper's number for the preset was "
    "measured on: test, but validation for celeb_a and celeb_a_beta100).",
)
flags.DEFINE_string("dataset", None, "Evaluate on this dataset (default: the model's).")
flags.DEFINE_integer("num_samples", 128, "k, importance samples per image.", lower_bound=1)
flags.DEFINE_integer("batch_size", 16, "Images per batch.", lower_bound=1)
flags.DEFINE_integer(
    "chunk_size", 16, "Importance samples decoded at once per image.", lower_bound=1
)
flags.DEFINE_integer(
    "max_examples",
    None,
    "Evaluate N images drawn uniformly from the whole split with --seed (default: all).",
    lower_bound=1,
)
flags.DEFINE_integer(
    "seed", 0, "Seed of the subset, the importance samples and the figures' images."
)
flags.DEFINE_string(
    "data_dir", None, "Folder of the original dataset files (default: $VNCA_DATA_DIR)."
)
flags.DEFINE_enum("data_source", "auto", list(configs.DATA_SOURCES), "Where the data come from.")
flags.DEFINE_string(
    "output_dir",
    None,
    "Where results.json and the figures go "
    "(default: MODEL_DIR/evaluation, or runs/evaluation/NAME/VERSION for "
    "the SavedModel NAME/VERSION). A results.json is replaced only by the same "
    "measurement on more images.",
)
flags.DEFINE_list(
    "figures", [], "Figures to draw (comma-separated), or 'all' (those that exist for the model)."
)
flags.DEFINE_bool("skip_likelihood", False, "Only draw figures.")
flags.DEFINE_string(
    "baseline_dir",
    None,
    "A trained baseline's folder, drawn beside the VNCA in damage_during_growth.",
)
flags.DEFINE_integer(
    "tsne_examples", 5000, "Encodings in the t-SNE figure (a seeded draw).", lower_bound=2
)
FLAGS = flags.FLAGS
FIGURE_IMAGES = 64  # Images drawn for the figures that show dataset images.
HEALING_IMAGES = 100  # Images drawn to measure a non-doubling VNCA's regrowth.


def _header(preset, source: str) -> str:
    """What is measured, on what, in one line."""
    which = "" if FLAGS.saved_model else f", {FLAGS.checkpoint} checkpoint"
    images = (
        f"{FLAGS.max_examples:,} images drawn with seed {FLAGS.seed}"
        if FLAGS.max_examples
        else "every image"
    )
    what = "figures only" if FLAGS.skip_likelihood else f"IWAE-{FLAGS.num_samples} on {images}"
    changed = f", overrides: {overrides.describe(overrides.GIVEN)}" if overrides.GIVEN else ""
    return (
        f"Evaluating {source} ({preset.name}{which}{changed}) on "
        f"{FLAGS.dataset or preset.dataset} {FLAGS.split}: {what}"
    )


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    if bool(FLAGS.model_dir) == bool(FLAGS.saved_model):
        return cli.error(
            "Give one of --model_dir (a folder written by train.py) and "
            "--saved_model (an exported version folder)."
        )
    cli.start_tensorflow()
    from vnca_tf import data, loading
    from vnca_tf.common import faults
    from vnca_tf.data import DataError
    from vnca_tf.evaluation import figures, reports
    from vnca_tf.training.run_folder import RunFolderError

    source = os.path.normpath(FLAGS.saved_model or FLAGS.model_dir)
    output_dir = FLAGS.output_dir or reports.default_output_dir(FLAGS.model_dir, FLAGS.saved_model)
    try:
        described = loading.with_changes(
            loading.read_preset_of(FLAGS.model_dir, FLAGS.saved_model), overrides.GIVEN
        )
        FLAGS.split = FLAGS.split or configs.paper_split(described.name)
        print(_header(described, source), flush=True)
        # An export is rebuilt as a Keras model, so that it is measured as this
        # version measures (each image seeded by its index in the split).
        if FLAGS.saved_model:
            model, preset, training = loading.restore_saved_model(source, overrides.GIVEN)
        else:
            model, preset, training = loading.restore(
                FLAGS.model_dir, FLAGS.checkpoint, overrides.GIVEN
            )
        dataset = FLAGS.dataset or preset.dataset
        began = time.perf_counter()
        images = _split_images(preset)
        subset, drawn = data.draw(images, FLAGS.max_examples, FLAGS.seed)
        print(
            f"Loaded {dataset} {FLAGS.split} in {time.perf_counter() - began:.1f} s: "
            f"{data.subsets.describe(drawn, FLAGS.split)}",
            flush=True,
        )
        if not FLAGS.skip_likelihood:
            protocol = {
                "dataset": dataset,
                "split": FLAGS.split,
                "num_samples": FLAGS.num_samples,
                "model_source": source,
                "checkpoint": "saved_model"
                if FLAGS.saved_model
                else f"{FLAGS.checkpoint}: {training['checkpoint']}",
                "overrides": list(overrides.GIVEN),
            }
            path = os.path.join(output_dir, "results.json")
            reports.check_replaceable(path, protocol, drawn["count"])  # Before the hours.
            with faults.doing(f"Writing {path}"):
                _measure(model, preset, images, subset, protocol, drawn, training, path)
        names = figures.applicable(model) if FLAGS.figures == ["all"] else FLAGS.figures
        if names:
            baseline = (
                loading.restore(FLAGS.baseline_dir, FLAGS.checkpoint)[0]
                if FLAGS.baseline_dir
                else None
            )
            with faults.doing(f"Drawing the figures into {output_dir}"):
                _draw(model, preset, names, images, baseline, output_dir)
    except (
        reports.EvaluationError,
        RunFolderError,
        DataError,
        faults.FaultError,
        ValueError,
    ) as error:
        return cli.error(str(error))
    return 0


def _split_images(preset):
    from vnca_tf.evaluation import likelihood

    return likelihood.split_images(
        preset, FLAGS.split, FLAGS.data_dir, FLAGS.data_source, FLAGS.dataset
    )


def _measure(model, preset, images, subset, protocol, drawn, training, path):
    """The log-likelihood of ``subset`` (and a non-doubling VNCA's healing of
    images drawn from the split) into results.json."""
    from vnca_tf import configs, data
    from vnca_tf.evaluation import healing, likelihood, reports

    measured = {
        "subset": drawn,
        "seed": FLAGS.seed,
        "batch_size": FLAGS.batch_size,
        "chunk_size": FLAGS.chunk_size,
        "data_source": data.source_of(protocol["dataset"], FLAGS.data_dir, FLAGS.data_source),
    }
    report = reports.report_header(preset, protocol, measured, training)
    report.update(
        likelihood.log_likelihood(
            model,
            subset,
            configs.data_dimensions(protocol["dataset"], preset.model.image_shape),
            FLAGS.num_samples,
            FLAGS.batch_size,
            FLAGS.chunk_size,
            FLAGS.seed,
        )
    )
    if model.damage_kind == "damage_recovery":
        healed = data.draw_batch(images, HEALING_IMAGES, FLAGS.seed)
        report["healing"] = {
            "images": data.subsets.describe(
                {"count": len(healed), "of": drawn["of"], "seed": FLAGS.seed}, FLAGS.split
            ),
            **healing.healing(model, healed, seed=FLAGS.seed),
        }
    reports.write_report(report, path)
    print(
        f"\nlog p(x) >= {report['log_likelihood_nats']:.2f} ± "
        f"{report['stderr_nats']:.2f} nats = {report['bits_per_dim']:.4f} bits/dim "
        f"({report['num_dimensions']:,} dimensions) over "
        f"{data.subsets.describe(drawn, FLAGS.split)}, k = {FLAGS.num_samples}; "
        f"written to {path}"
    )
    for name, measured in report.get("by_convention", {}).items():
        note = " (the paper's measure)" if name == "pixelcnn" else ""
        print(
            f"  in {name} bins{note}: {measured['bits_per_dim']:.4f} ± "
            f"{measured['stderr_bits_per_dim']:.4f} bits/dim"
        )
    if "healing" in report:
        heal = report["healing"]
        print(
            f"Inside the erased square the images are off by {heal['damaged_error']:.4f} "
            f"after damage, by {heal['recovered_error']:.4f} after regrowth (mean absolute "
            f"difference, {heal['images']})"
        )


def _draw(model, preset, names, images, baseline, output_dir):
    """The named figures, as PNG files in output_dir, from images drawn with
    --seed from the whole split (the same for every model)."""
    from vnca_tf import data
    from vnca_tf.evaluation import figures

    batch = data.draw_batch(images, FIGURE_IMAGES, FLAGS.seed)
    paths = figures.draw_figures(
        model,
        [n for n in names if n != "tsne"],
        batch,
        output_dir,
        baseline=baseline,
        seed=FLAGS.seed,
    )
    if "tsne" in names:
        tsne_images, labels = batch, None
        if preset.dataset in ("binarized_mnist", "mnist"):
            pairs = data.load_split(
                "mnist",
                FLAGS.split,
                data_dir=FLAGS.data_dir,
                source=FLAGS.data_source,
                with_labels=True,
                image_size=preset.model.image_shape[0],
            )
            tsne_images, labels = data.draw_batch(pairs, FLAGS.tsne_examples, FLAGS.seed)
        paths.update(
            figures.draw_figures(
                model, ["tsne"], tsne_images, output_dir, labels=labels, seed=FLAGS.seed
            )
        )
    for name, path in paths.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    app.run(main, flags_parser=overrides.parse_flags)
