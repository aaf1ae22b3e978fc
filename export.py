"""Exports a trained VNCA as a SavedModel for TF Serving and plain TensorFlow.

    python export.py --model_dir=runs/mnist --export_dir=exports/mnist [--version=1]

writes EXPORT_DIR/VERSION (the layout TF Serving watches) with the signatures
that vnca_tf.export describes, the preset and the training record.
"""

from absl import app, flags, logging

from vnca_tf import cli, configs

flags.DEFINE_string("model_dir", None, "A training folder written by train.py.")
flags.DEFINE_enum("checkpoint", "latest", list(configs.CHECKPOINTS), "Which checkpoint.")
flags.DEFINE_string("export_dir", None, "The model's folder; the SavedModel goes to "
                    "EXPORT_DIR/VERSION.")
flags.DEFINE_integer("version", 1, "The version folder TF Serving serves.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    if not FLAGS.model_dir or not FLAGS.export_dir:
        return cli.error("Give --model_dir (a training folder) and --export_dir.")
    cli.start_tensorflow()
    from vnca_tf import export, run_folder

    try:
        model, preset, training = run_folder.restore(FLAGS.model_dir, FLAGS.checkpoint)
        path = export.export(model, preset, FLAGS.export_dir, FLAGS.version, training)
    except (run_folder.RunFolderError, FileExistsError) as error:
        return cli.error(str(error))
    print(f"Exported {preset.name} (step {training['steps']}) to {path}")
    return 0


if __name__ == "__main__":
    app.run(main)
