"""Serves the browser demo: grow a VNCA, damage it with the mouse, see it regrow.

    npm ci --prefix web && python serve_demo.py [--port=8000]

then open http://localhost:8000/. The page runs the TensorFlow.js models in
web/models (shipped) and web/my_models (``export.py --tfjs=web/my_models/NAME``).
"""

import os
import sys

from absl import app, flags

from vnca_tf.common import cli
from vnca_tf.serving.demo_server import TFJS_SCRIPT, list_models, make_server

flags.DEFINE_integer("port", 8000, "The port to serve on.")
flags.DEFINE_string("host", "localhost", "The address to serve on (0.0.0.0: every one).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if not os.path.isfile(TFJS_SCRIPT):
        return cli.error(
            "TensorFlow.js is not installed in web/node_modules; run `npm ci --prefix web` first."
        )
    models = list_models()
    for model in models:
        if model["error"]:
            cli.warn(f"skipped {model['path']}: {model['error']}")
    if not any(model["error"] is None for model in models):
        return cli.error(
            "No models in web/models or web/my_models; write one with "
            "`python export.py --model_dir=... --tfjs=web/my_models/NAME`."
        )
    if not 0 <= FLAGS.port <= 65535:
        return cli.error(f"--port must be in [0, 65535] (0: any free one), got {FLAGS.port}.")
    try:
        server = make_server(FLAGS.port, host=FLAGS.host)
    except OSError as error:
        reason = error.strerror or str(error)
        return cli.error(
            f"Cannot serve on {FLAGS.host}:{FLAGS.port} ({reason}); pass another "
            "--port, or a --host this machine has (localhost, 0.0.0.0)."
        )
    print(
        f"Serving the demo at http://{FLAGS.host}:{server.server_port}/ (Ctrl-C stops it)",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print(file=sys.stderr)
    return 0


if __name__ == "__main__":
    app.run(main)
