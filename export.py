"""Exports a trained VNCA as a SavedModel for TF Serving and plain TensorFlow.

    python export.py --model_dir=runs/mnist --export_dir=exports/mnist [--version=1]
    python export.py --model_dir=runs/mnist_heal_cpu --tfjs=web/models/mnist_heal_cpu

writes EXPORT_DIR/VERSION (the layout TF Serving watches) with the signatures
that vnca_tf.export describes, the preset and the training record; --tfjs
writes the browser demo's graphs (vnca_tf.browser_graphs) as TensorFlow.js
graph models.
"""

import os

from absl import app, flags, logging

from vnca_tf import cli, configs

flags.DEFINE_string("model_dir", None, "A training folder written by train.py.")
flags.DEFINE_enum("checkpoint", "latest", list(configs.CHECKPOINTS), "Which checkpoint.")
flags.DEFINE_string("export_dir", None, "The model's folder; the SavedModel goes to "
                    "EXPORT_DIR/VERSION.")
flags.DEFINE_integer("version", 1, "The version folder TF Serving serves.")
flags.DEFINE_string("tfjs", None, "Also (or instead) write the graphs the browser demo "
                    "runs, as TensorFlow.js graph models, to this folder (e.g. "
                    "web/models/NAME).")
flags.DEFINE_string("tfjs_converter", None, "tensorflowjs_converter to use (default: "
                    ".venv-tfjs/bin/tensorflowjs_converter, made by "
                    "web/make_converter_env.sh).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    if not FLAGS.model_dir or not (FLAGS.export_dir or FLAGS.tfjs):
        return cli.error("Give --model_dir (a training folder) and --export_dir (a "
                         "SavedModel) or --tfjs (the browser's graphs), or both.")
    cli.start_tensorflow()
    from vnca_tf import browser_graphs, export, run_folder

    try:
        model, preset, training = run_folder.restore(FLAGS.model_dir, FLAGS.checkpoint)
        if FLAGS.export_dir:
            path = export.export(model, preset, FLAGS.export_dir, FLAGS.version, training)
            print(f"Exported {preset.name} (step {training['steps']}) to {path}")
        if FLAGS.tfjs:
            path = browser_graphs.convert(
                model, preset, FLAGS.tfjs, FLAGS.tfjs_converter or browser_graphs.CONVERTER,
                training)
            print(f"Wrote the browser graphs of {preset.name} (step {training['steps']}) "
                  f"to {os.path.dirname(path)}")
    except (run_folder.RunFolderError, FileExistsError, FileNotFoundError,
            ValueError) as error:
        return cli.error(str(error))
    return 0


if __name__ == "__main__":
    app.run(main)
