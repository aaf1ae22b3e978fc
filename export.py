"""Exports a trained VNCA as a SavedModel for TF Serving and plain TensorFlow,
and as the browser demo's TensorFlow.js models.

    python export.py --model_dir=runs/mnist --export_dir=exports/mnist [--version=1]
    python export.py --model_dir=runs/mnist_heal_cpu --tfjs=web/my_models/mnist_heal_cpu
    python export.py --saved_model=saved_models/mnist_heal_cpu/1 --tfjs=web/my_models/heal

writes EXPORT_DIR/VERSION (the layout TF Serving watches) with the signatures
that vnca_tf.serving.export describes, the preset and the training record;
--tfjs converts the SavedModel's browser graphs (vnca_tf.serving.browser_graphs)
to TensorFlow.js graph models with the official converter (serving.tfjs), with
the model's evaluate.py results beside them when there are any.
--config.model.FIELD=VALUE changes one of the model fields that keep a trained
model's weights (configs.WEIGHT_KEEPING_FIELDS, e.g. --config.model.max_steps=128)
in what is exported; any other is refused.
"""

import json
import os
import tempfile

from absl import app, flags, logging

from vnca_tf import configs
from vnca_tf.common import cli
from vnca_tf.configs import overrides

flags.DEFINE_string("model_dir", None, "A training folder written by train.py.")
flags.DEFINE_enum("checkpoint", "latest", list(configs.CHECKPOINTS), "Which checkpoint.")
flags.DEFINE_string(
    "export_dir", None, "The model's folder; the SavedModel goes to EXPORT_DIR/VERSION."
)
flags.DEFINE_integer("version", 1, "The version folder TF Serving serves.")
flags.DEFINE_string(
    "saved_model",
    None,
    "Instead of --model_dir: an exported SavedModel "
    "version folder (e.g. saved_models/mnist_heal_cpu/1), rebuilt from its "
    "variables (an older export gains this version's signatures).",
)
flags.DEFINE_string(
    "tfjs",
    None,
    "Also (or instead) write the graphs the browser demo "
    "runs, as TensorFlow.js graph models, to this folder (e.g. "
    "web/my_models/NAME; python serve_demo.py shows them).",
)
flags.DEFINE_string(
    "tfjs_converter",
    None,
    "tensorflowjs_converter to use (default: "
    ".venv-tfjs/bin/tensorflowjs_converter, made by "
    "web/make_converter_env.sh).",
)
FLAGS = flags.FLAGS


def _results(path: str):
    """The evaluate.py report at ``path``, or None."""
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    if bool(FLAGS.model_dir) == bool(FLAGS.saved_model):
        return cli.error(
            "Give one source: --model_dir (a training folder) or "
            "--saved_model (an exported version folder)."
        )
    if FLAGS.saved_model and FLAGS["checkpoint"].present:
        return cli.error(
            "--checkpoint picks a checkpoint of --model_dir; a SavedModel holds one set of weights."
        )
    if not (FLAGS.export_dir or FLAGS.tfjs):
        return cli.error(
            "Give --export_dir (a SavedModel) or --tfjs (the browser's graphs), or both."
        )
    cli.start_tensorflow()
    from vnca_tf import loading
    from vnca_tf.common import faults
    from vnca_tf.evaluation.reports import default_output_dir
    from vnca_tf.serving import export, tfjs
    from vnca_tf.training.run_folder import RunFolderError

    try:
        if FLAGS.saved_model:
            model, preset, training = loading.restore_saved_model(
                FLAGS.saved_model, overrides.GIVEN
            )
            results = os.path.join(
                os.path.dirname(os.path.normpath(FLAGS.saved_model)), "results.json"
            )
        else:
            model, preset, training = loading.restore(
                FLAGS.model_dir, FLAGS.checkpoint, overrides.GIVEN
            )
            results = os.path.join(default_output_dir(FLAGS.model_dir), "results.json")
        with (
            tempfile.TemporaryDirectory() as scratch,
            faults.doing(f"Writing the SavedModel to {FLAGS.export_dir or scratch}"),
        ):
            path = export.export(
                model, preset, FLAGS.export_dir or scratch, FLAGS.version, training
            )
            if FLAGS.export_dir:
                print(f"Exported {preset.name} (step {training.get('steps')}) to {path}")
            if FLAGS.tfjs:
                manifest = tfjs.convert(
                    path, FLAGS.tfjs, FLAGS.tfjs_converter or tfjs.CONVERTER, _results(results)
                )
                print(
                    f"Wrote the browser graphs of {preset.name} (step "
                    f"{training.get('steps')}) to {os.path.dirname(manifest)}"
                )
    except (
        RunFolderError,
        faults.FaultError,
        FileExistsError,
        FileNotFoundError,
        RuntimeError,
        ValueError,
    ) as error:
        return cli.error(str(error))
    return 0


if __name__ == "__main__":
    app.run(main, flags_parser=overrides.parse_flags)
