#!/usr/bin/env bash
# Makes .venv-tfjs, the environment of TensorFlow.js's official converter
# (tensorflowjs on PyPI). It pins TensorFlow 2.19 where this project uses 2.21,
# so it never shares the project's environment. ydf < 0.12: newer ones need a
# protobuf that TensorFlow 2.19 refuses.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-tfjs
.venv-tfjs/bin/pip install -q "tensorflowjs==4.22.0" "ydf<0.12"
echo "Converter ready: .venv-tfjs/bin/tensorflowjs_converter"
