"""Serves the browser demo (web/) with the list of its converted models.

``python serve_demo.py`` serves web/ as static files, plus ``models.json``:
the models under web/models (shipped) and web/my_models (yours, written by
``export.py --tfjs=web/my_models/NAME``), found on each request, so that no
index file has to be kept up to date. No TensorFlow here: it starts at once.
"""

import functools
import http.server
import json
import os

MANIFEST = "vnca.json"  # What vnca_tf.tfjs writes beside a model's graphs.
MODEL_FOLDERS = ("models", "my_models")
WEB_ROOT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "web"
)
# The page's TensorFlow.js, which `npm ci --prefix web` installs.
TFJS_SCRIPT = os.path.join(WEB_ROOT, "node_modules", "@tensorflow", "tfjs", "dist", "tf.min.js")


def list_models(root: str = WEB_ROOT) -> list:
    """The converted models under root/models and root/my_models (subfolders
    holding a vnca.json), as {"path": "FOLDER/NAME", "error": None}: those that
    regrow (non-doubling) first, the best healer (results.healing) first among
    them, then shipped before yours, then by name; the page opens the first.
    A manifest that does not read comes last, with ``error`` saying why."""
    entries, broken = [], []
    for rank, folder in enumerate(MODEL_FOLDERS):
        path = os.path.join(root, folder)
        for name in sorted(os.listdir(path)) if os.path.isdir(path) else ():
            manifest_path = os.path.join(path, name, MANIFEST)
            if not os.path.isfile(manifest_path):
                continue
            try:
                with open(manifest_path) as f:
                    manifest = json.load(f)
                doubling = bool(manifest["schedule"]["doubles_after"])
                healing = manifest.get("results", {}).get("healing", {})
                ratio = float(healing.get("recovered_over_damaged", float("inf")))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
                broken.append(
                    {
                        "path": f"{folder}/{name}",
                        "error": (
                            f"{os.path.relpath(manifest_path, root)} does not read: "
                            f"{type(error).__name__}: {error}"
                        ),
                    }
                )
                continue
            entries.append((doubling, ratio, rank, name, f"{folder}/{name}"))
    return [{"path": model, "error": None} for *_, model in sorted(entries)] + broken


class DemoHandler(http.server.SimpleHTTPRequestHandler):
    """Static files of web/, and /models.json from list_models."""

    def do_GET(self):
        if self.path.split("?")[0] != "/models.json":
            return super().do_GET()
        body = json.dumps(list_models(self.directory)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code="-", size="-"):  # Failed requests only.
        if not str(getattr(code, "value", code)).startswith(("2", "3")):
            super().log_request(code, size)


def make_server(port: int = 8000, root: str = WEB_ROOT, host: str = "localhost"):
    """An HTTP server of the demo on host:port (port 0: any free one)."""
    handler = functools.partial(DemoHandler, directory=root)
    return http.server.ThreadingHTTPServer((host, port), handler)
