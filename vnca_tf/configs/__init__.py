"""Configurations (no TensorFlow): the schema, the kinds of model, the paper's
presets, the shipped CPU presets, and presets read back from JSON.

    from vnca_tf import configs
    preset = configs.get_preset("mnist")   # or configs.preset_for("celeb_a")
"""

from vnca_tf.configs.kinds import INITIAL_SIDE, kind_of
from vnca_tf.configs.paper import DATASET_PRESETS, MODEL_KINDS, paper_split
from vnca_tf.configs.presets import PRESETS, get_preset, preset_for
from vnca_tf.configs.saved import model_config_from_dict, preset_from_dict, preset_to_dict
from vnca_tf.configs.schema import (
    CHECKPOINTS,
    DATA_SOURCES,
    ENCODER_DOWNSAMPLING,
    JIT_COMPILE,
    LIKELIHOOD_CONVENTIONS,
    PRECISIONS,
    STRATEGIES,
    WEIGHT_KEEPING_FIELDS,
    ModelConfig,
    Preset,
    RunConfig,
    TrainConfig,
    data_dimensions,
    weight_changing_fields,
)

__all__ = [
    "CHECKPOINTS",
    "DATASET_PRESETS",
    "DATA_SOURCES",
    "ENCODER_DOWNSAMPLING",
    "INITIAL_SIDE",
    "JIT_COMPILE",
    "LIKELIHOOD_CONVENTIONS",
    "MODEL_KINDS",
    "PRECISIONS",
    "PRESETS",
    "STRATEGIES",
    "ModelConfig",
    "Preset",
    "RunConfig",
    "TrainConfig",
    "WEIGHT_KEEPING_FIELDS",
    "data_dimensions",
    "get_preset",
    "kind_of",
    "model_config_from_dict",
    "paper_split",
    "preset_for",
    "preset_from_dict",
    "preset_to_dict",
    "weight_changing_fields",
]
