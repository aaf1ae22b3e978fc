"""Measures a trained model the way the paper does, and draws its figures.

    python evaluate.py --model_dir=runs/mnist                   # IWAE-128 on the test set
    python evaluate.py --model_dir=runs/mnist --figures=all --skip_likelihood
    python evaluate.py --model_dir=runs/mnist --max_examples=1000 --checkpoint=best

Writes OUTPUT_DIR/results.json (log-likelihood in nats per image and bits/dim,
standard error, number of images, k, time, the training record: steps,
wall time, train.py command, precision; and for non-doubling VNCAs how well
they regrow after damage) and one PNG per
figure (reconstructions, samples, growth, interpolations, tsne,
damage_recovery, damage_during_growth).

Model fields that keep the weights' shapes can be changed for the measurement,
e.g. --config.model.max_steps=128 or --config.model.likelihood_convention=exact
(recorded in results.json's "overrides").
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
flags.DEFINE_string("split", "test", "The split to evaluate.")
flags.DEFINE_string("dataset", None, "Evaluate on this dataset (default: the model's).")
flags.DEFINE_integer("num_samples", 128, "k, importance samples per image.", lower_bound=1)
flags.DEFINE_integer("batch_size", 16, "Images per batch.", lower_bound=1)
flags.DEFINE_integer(
    "chunk_size", 16, "Importance samples decoded at once per image.", lower_bound=1
)
flags.DEFINE_integer(
    "max_examples", None, "Evaluate only the first N images (the report says so).", lower_bound=1
)
flags.DEFINE_integer("seed", 0, "Seed of the importance samples and the figures.")
flags.DEFINE_string(
    "data_dir", None, "Folder of the original dataset files (default: $VNCA_DATA_DIR)."
)
flags.DEFINE_enum("data_source", "auto", list(configs.DATA_SOURCES), "Where the data come from.")
flags.DEFINE_string(
    "output_dir",
    None,
    "Where results.json and the figures go "
    "(default: MODEL_DIR/evaluation, or runs/evaluation/NAME/VERSION for "
    "the SavedModel NAME/VERSION). A results.json measured on more images "
    "is never replaced.",
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
flags.DEFINE_integer("tsne_examples", 5000, "Test encodings in the t-SNE figure.", lower_bound=2)
FLAGS = flags.FLAGS


def _header(preset, source: str) -> str:
    """What is measured, on what, in one line."""
    which = "" if FLAGS.saved_model else f", {FLAGS.checkpoint} checkpoint"
    images = f"the first {FLAGS.max_examples:,} images" if FLAGS.max_examples else "every image"
    what = (
        "figures only"
        if FLAGS.skip_likelihood
        else f"IWAE-{FLAGS.num_samples} on {images}, {FLAGS.batch_size} a batch"
    )
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
    from vnca_tf import loading
    from vnca_tf.common import faults
    from vnca_tf.data import DataError
    from vnca_tf.evaluation import figures, likelihood, reports
    from vnca_tf.training.run_folder import RunFolderError

    source = os.path.normpath(FLAGS.saved_model) if FLAGS.saved_model else FLAGS.model_dir
    output_dir = FLAGS.output_dir or reports.default_output_dir(FLAGS.model_dir, FLAGS.saved_model)
    try:
        if not FLAGS.skip_likelihood:  # Before the hours of work, not after.
            reports.check_replaceable(os.path.join(output_dir, "results.json"), FLAGS.max_examples)
        print(
            _header(
                loading.with_changes(
                    loading.read_preset_of(FLAGS.model_dir, FLAGS.saved_model), overrides.GIVEN
                ),
                source,
            ),
            flush=True,
        )
        if FLAGS.saved_model and not overrides.GIVEN:
            model, preset = loading.load_saved_model(source)
            training = model.training
        elif FLAGS.saved_model:  # Rebuilt as a Keras model, with the changed fields.
            model, preset, training = loading.restore_saved_model(source, overrides.GIVEN)
        else:
            model, preset, training = loading.restore(
                FLAGS.model_dir, FLAGS.checkpoint, overrides.GIVEN
            )
        began = time.perf_counter()
        images = likelihood.test_images(
            preset, FLAGS.split, FLAGS.data_dir, FLAGS.data_source, FLAGS.dataset
        )
        print(
            f"Loaded {int(images.cardinality()):,} {FLAGS.split} images in "
            f"{time.perf_counter() - began:.1f} s",
            flush=True,
        )
        if not FLAGS.skip_likelihood:
            with faults.doing(f"Writing {output_dir}/results.json"):
                _measure(model, preset, images, training, source, output_dir)
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


def _measure(model, preset, images, training, source, output_dir):
    """The log-likelihood (and a non-doubling VNCA's healing) into results.json."""
    from vnca_tf.evaluation import healing, likelihood, reports

    report = reports.report_header(preset, FLAGS.split, source, training)
    report["overrides"] = list(overrides.GIVEN)
    report.update(
        likelihood.log_likelihood(
            model,
            images,
            FLAGS.num_samples,
            FLAGS.batch_size,
            FLAGS.chunk_size,
            FLAGS.max_examples,
            FLAGS.seed,
        )
    )
    report["subset"] = bool(FLAGS.max_examples)
    if model.damage_kind == "damage_recovery":
        report["healing"] = healing.healing(model, seed=FLAGS.seed)
    path = reports.write_report(report, os.path.join(output_dir, "results.json"))
    subset = " (a subset: --max_examples)" if FLAGS.max_examples else ""
    print(
        f"\nlog p(x) >= {report['log_likelihood_nats']:.2f} ± "
        f"{report['stderr_nats']:.2f} nats = {report['bits_per_dim']:.4f} bits/dim "
        f"over {report['num_examples']} {FLAGS.split} images{subset}, k = "
        f"{FLAGS.num_samples}; written to {path}"
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
            f"After damage the images are off by {heal['damaged_error']:.4f}, after "
            f"regrowth by {heal['recovered_error']:.4f} (mean absolute difference over "
            f"{heal['num_samples']} samples)"
        )


def _draw(model, preset, names, images, baseline, output_dir):
    """The named figures, as PNG files in output_dir."""
    from vnca_tf import data
    from vnca_tf.evaluation import figures

    batch = next(iter(images.batch(64))).numpy()
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
            pairs = data.load(
                "mnist",
                "test",
                data_dir=FLAGS.data_dir,
                source=FLAGS.data_source,
                with_labels=True,
                image_size=preset.model.image_shape[0],
            )
            tsne_images, labels = (t.numpy() for t in next(iter(pairs.batch(FLAGS.tsne_examples))))
        paths.update(
            figures.draw_figures(
                model, ["tsne"], tsne_images, output_dir, labels=labels, seed=FLAGS.seed
            )
        )
    for name, path in paths.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    app.run(main, flags_parser=overrides.parse_flags)
