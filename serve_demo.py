"""Serves the browser demo: grow a VNCA, damage it with the mouse, see it regrow.

    npm ci --prefix web && python serve_demo.py [--port=8000]

then open http://localhost:8000/. The page runs the TensorFlow.js models in
web/models (shipped) and web/my_models (``export.py --tfjs=web/my_models/NAME``).
"""

import os
import sys

from absl import app, flags

from vnca_tf import cli
from vnca_tf.demo_server import TFJS_SCRIPT, list_models, make_server

flags.DEFINE_integer("port", 8000, "The port to serve on.")
flags.DEFINE_string("host", "localhost", "The address to serve on (0.0.0.0: every one).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if not os.path.isfile(TFJS_SCRIPT):
        return cli.error("TensorFlow.js is not installed in web/node_modules; run "
                         "`npm ci --prefix web` first.")
    if not list_models():
        return cli.error("No models in web/models or web/my_models; write one with "
                         "`python export.py --model_dir=... --tfjs=web/my_models/NAME`.")
    try:
        server = make_server(FLAGS.port, host=FLAGS.host)
    except OSError as error:
        return cli.error(f"Cannot serve on {FLAGS.host}:{FLAGS.port} ({error.strerror}); "
                         "pass another --port.")
    print(f"Serving the demo at http://{FLAGS.host}:{server.server_port}/ (Ctrl-C stops it)",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print(file=sys.stderr)
    return 0


if __name__ == "__main__":
    app.run(main)
