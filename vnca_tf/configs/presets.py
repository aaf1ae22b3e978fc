"""Every preset by name: the paper's and the shipped CPU ones, and presets of
your own, named ``FILE.py:NAME`` (a Python file that defines a Preset NAME, or
a dict PRESETS of them), so that a new experiment needs no edit of the package."""

import importlib.util
import os
from typing import Dict

from vnca_tf.configs import cpu, paper
from vnca_tf.configs.schema import Preset

PRESETS: Dict[str, Preset] = {preset.name: preset for preset in paper.PRESETS + cpu.PRESETS}


def get_preset(name: str) -> Preset:
    """The preset called ``name``, or ``path/to/file.py:NAME`` from that file.

    Raises:
      ValueError: an unknown name (the message lists the known ones), or a file
        that does not define it.
    """
    if ":" in name:
        return _preset_from_file(*name.rsplit(":", 1))
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"Unknown preset {name!r}. Known presets: {', '.join(sorted(PRESETS))} (or "
            "FILE.py:NAME for one of your own)."
        ) from None


def _preset_from_file(path: str, name: str) -> Preset:
    if not os.path.isfile(path):
        raise ValueError(f"No preset file {path} (in --preset={path}:{name}).")
    spec = importlib.util.spec_from_file_location(f"vnca_presets_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = getattr(module, "PRESETS", {}).get(name, getattr(module, name, None))
    if not isinstance(found, Preset):
        raise ValueError(
            f"{path} defines no Preset {name!r} (as a variable, or in a dict PRESETS)."
        )
    return found


def preset_for(dataset: str, model: str = "vnca") -> Preset:
    """The paper's preset for a dataset and kind of model ("vnca": doubling,
    "damage": non-doubling with damage training, "baseline": convolutional).

    Raises:
      ValueError: for a pair the paper has no experiment for; the message
        lists those it has.
    """
    name = paper.DATASET_PRESETS.get((dataset, model))
    if name is None:
        known = ", ".join(f"{d} --model={m}" for d, m in paper.DATASET_PRESETS)
        raise ValueError(
            f"The paper has no {model} experiment on {dataset!r}. "
            f"Known: {known} (or pick any --preset)."
        )
    return PRESETS[name]
