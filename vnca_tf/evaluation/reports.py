"""An evaluation's report (results.json): where it goes, what it says about
the model, the data and how they were measured, and never replacing another
measurement or one on more images."""

import dataclasses
import json
import os
from typing import Optional

from vnca_tf import configs


class EvaluationError(ValueError):
    """A model folder or dataset that cannot be evaluated, and why."""


def default_output_dir(model_dir: Optional[str] = None, saved_model: Optional[str] = None) -> str:
    """Where evaluate.py writes by default: MODEL_DIR/evaluation for a training
    folder, runs/evaluation/NAME/VERSION for the SavedModel NAME/VERSION (never
    beside it: the shipped models' results are tracked files)."""
    if saved_model:
        return os.path.join("runs", "evaluation", *os.path.normpath(saved_model).split(os.sep)[-2:])
    return os.path.join(model_dir, "evaluation")


# What a number means: a report is replaced only by one that agrees on all of
# these and is measured on more images.
PROTOCOL = ("dataset", "split", "num_samples", "model_source", "checkpoint", "overrides")


def check_replaceable(path: str, protocol: dict, num_examples: int) -> None:
    """Refuses to replace the report at ``path`` with one of another ``protocol``
    (see PROTOCOL) or one measured on no more images than it, in one line
    that says why."""
    if not os.path.isfile(path):
        return
    try:
        with open(path) as f:
            earlier = json.load(f)
        earlier_protocol, earlier_count = earlier.get("protocol"), int(earlier["num_examples"])
    except (ValueError, TypeError, AttributeError, KeyError):
        return  # Not a report of ours: nothing to keep.
    if earlier_protocol is None:
        raise EvaluationError(
            f"{path} holds a report that does not say how it was measured (an older "
            "evaluate.py); move it away or pass another --output_dir."
        )
    differences = [
        f"{key} {earlier_protocol.get(key)!r} there, {protocol[key]!r} here"
        for key in PROTOCOL
        if earlier_protocol.get(key) != protocol[key]
    ]
    if differences:
        raise EvaluationError(
            f"{path} holds a report of another measurement ({'; '.join(differences)}); "
            "pass another --output_dir to keep both."
        )
    if earlier_count >= num_examples:
        raise EvaluationError(
            f"{path} holds the same measurement over {earlier_count:,} images; this one, "
            f"over {num_examples:,}, would replace it. Pass another --output_dir, or "
            f"--max_examples above {earlier_count:,}."
        )


def write_report(report: dict, path: str) -> str:
    """Writes ``report`` as JSON to ``path``, unless that replaces another (see
    check_replaceable); returns the path."""
    check_replaceable(path, report["protocol"], report["num_examples"])
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    return path


def report_header(preset: configs.Preset, protocol: dict, measured: dict, training: dict) -> dict:
    """What a report says about the model, its training, what was measured
    (``protocol``: PROTOCOL's fields) and how (``measured``: the subset, the
    seed, batch and chunk sizes, the data's source)."""
    return {
        "preset": preset.name,
        **protocol,
        "protocol": protocol,
        "image_shape": list(preset.model.image_shape),
        **measured,
        "training": training,
        "model": dataclasses.asdict(preset.model),
    }
