"""An evaluation's report (results.json): where it goes, what it says about
the model and the data, and never replacing one measured on more images."""

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


def check_replaceable(path: str, num_examples: Optional[int]) -> None:
    """Refuses to replace a report measured on more images than
    ``num_examples`` (None: the whole split, which replaces any)."""
    if num_examples is None or not os.path.isfile(path):
        return
    try:
        with open(path) as f:
            earlier = int(json.load(f).get("num_examples", 0))
    except (ValueError, TypeError, AttributeError):
        return  # Not a report of ours: nothing to keep.
    if earlier > num_examples:
        raise EvaluationError(
            f"{path} holds a result over {earlier} images; this one, over {num_examples}, "
            f"would replace it. Pass another --output_dir, or --max_examples={earlier} "
            "or more."
        )


def write_report(report: dict, path: str) -> str:
    """Writes ``report`` as JSON to ``path``, unless that replaces one measured
    on more images (see check_replaceable); returns the path."""
    check_replaceable(path, report["num_examples"])
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    return path


def report_header(preset: configs.Preset, split: str, source: str, training: dict) -> dict:
    """What a report says about the model, its training and the data it was
    measured on."""
    return {
        "preset": preset.name,
        "dataset": preset.dataset,
        "split": split,
        "image_shape": list(preset.model.image_shape),
        "model_source": source,
        "training": training,
        "model": dataclasses.asdict(preset.model),
    }
