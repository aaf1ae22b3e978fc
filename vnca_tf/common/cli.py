"""What the scripts share: one-line errors, and TensorFlow's start-up without its noise.

Every failure a user can cause (a bad flag value, a missing or corrupt file, a
folder of another run) ends a script with one line, ``Error: what is wrong and
what to do``, and exit code 2; no traceback.

TensorFlow's C++ libraries log through absl before absl is initialised, so
TF_CPP_MIN_LOG_LEVEL does not silence them (tensorflow/tensorflow#102212).
``quiet_startup`` captures file descriptor 2 while TensorFlow loads, drops the
lines that are only noise on this machine and passes on everything else.
"""

import contextlib
import os
import re
import sys
import tempfile

EXIT_ERROR = 2

# Start-up lines that ask nothing of the user.
_NOISE = re.compile(
    "|".join(
        [
            r"All log messages before absl::InitializeLog\(\) is called",
            r"oneDNN custom operations are on",
            r"This TensorFlow binary is optimized to use available CPU instructions",
            r"^To enable the following instructions: .* rebuild TensorFlow",
            r"Could not find cuda drivers on your machine",
        ]
    )
)
# cuInit fails on every machine without an NVIDIA driver: noise there only.
_NO_DRIVER = "Could not find cuda drivers on your machine"
_CUINIT = "failed call to cuInit"


def error(message: str) -> int:
    """Prints ``Error: message`` to stderr; returns the exit code."""
    print(f"Error: {message}", file=sys.stderr)
    return EXIT_ERROR


def warn(message: str) -> None:
    """Prints ``Warning: message`` to stderr."""
    print(f"Warning: {message}", file=sys.stderr)


def kept_lines(text: str) -> list:
    """The lines of captured start-up output that are worth showing."""
    no_driver = _NO_DRIVER in text
    return [
        line
        for line in text.splitlines()
        if line.strip() and not _NOISE.search(line) and not (no_driver and _CUINIT in line)
    ]


@contextlib.contextmanager
def quiet_startup():
    """Runs the block (importing TensorFlow, finding devices) with stderr
    captured at the descriptor level; afterwards writes the lines that are not
    start-up noise (see ``kept_lines``) to stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = kept_lines(capture.read().decode(errors="replace"))
            if lines:
                print("\n".join(lines), file=sys.stderr)


def start_tensorflow():
    """Imports TensorFlow (whose two libraries each print a banner) and finds
    the devices (where cuInit fails without a driver), quietly; returns the
    tensorflow module. The runtime stays unconfigured: a multi-worker strategy
    can still be created after it."""
    with quiet_startup():
        import tensorflow as tf

        tf.config.list_physical_devices()
    return tf
