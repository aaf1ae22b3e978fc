"""Presets as JSON: what config.json and an export's asset hold, read back,
with the fields that earlier versions named or lacked."""

import dataclasses

from vnca_tf.configs.kinds import kind_of
from vnca_tf.configs.schema import ModelConfig, Preset, TrainConfig

# TrainConfig fields under their earlier names, in configs saved before the
# rename (the shipped models' among them).
_EARLIER_NAMES = {"eval_every": "validation_every", "eval_batches": "validation_batches"}
# The bins a logistic-mixture model saved before the field existed trained with.
_EARLIER_CONVENTION = "exact"


def model_config_from_dict(saved: dict) -> ModelConfig:
    """The ModelConfig of a dict from ``dataclasses.asdict`` (JSON's lists as tuples)."""
    model = dict(saved)
    model["image_shape"] = tuple(model["image_shape"])
    if model.get("likelihood") == "logistic_mixture":
        model.setdefault("likelihood_convention", _EARLIER_CONVENTION)
    config = ModelConfig(**model)
    earlier = kind_of(config).earlier_defaults
    return dataclasses.replace(config, **{k: v for k, v in earlier.items() if k not in saved})


def preset_from_dict(saved: dict) -> Preset:
    """The Preset that training saved as config.json (or an export as its asset)."""
    train = {_EARLIER_NAMES.get(name, name): value for name, value in saved["train"].items()}
    train["learning_rate_drops"] = tuple(train.get("learning_rate_drops", ()))
    return Preset(
        saved["name"],
        saved["dataset"],
        model_config_from_dict(saved["model"]),
        TrainConfig(**train),
        saved.get("description", ""),
    )


def preset_to_dict(preset: Preset) -> dict:
    """The JSON-ready dict of a preset (``preset_from_dict`` reads it back)."""
    return dataclasses.asdict(preset)
