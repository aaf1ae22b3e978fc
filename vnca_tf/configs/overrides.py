"""Any config field from the command line: ``--config.model.update_probability=0.5``,
``--config.train.clip_norm=1``, ``--config.run.precision=mixed_bfloat16``, on
top of the chosen preset.

ml_collections' config_flags does this for mutable dataclasses, but the
configs here are frozen (a config is checked once, when it is made, and never
changes after) and the base preset is only known once --preset or --dataset
is parsed; so the same interface is built here: each override is parsed by
its field's type, applied with ``dataclasses.replace``, and the new config is
validated as a preset's is.
"""

import dataclasses
import difflib
import typing
from typing import List, Sequence, Tuple

from absl import app

from vnca_tf.configs.schema import ModelConfig, Preset, RunConfig, TrainConfig

PREFIX = "--config."
SECTIONS = {"model": ModelConfig, "train": TrainConfig, "run": RunConfig}
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
GIVEN: List[str] = []  # The command line's overrides, "section.field=value", from parse_flags.


def parse_flags(argv: Sequence[str]) -> List[str]:
    """absl's flag parsing (``app.run(main, flags_parser=parse_flags)``), with
    the --config.* overrides set aside in GIVEN."""
    rest, GIVEN[:] = split_argv(argv)
    return app.parse_flags_with_usage(rest)


def split_argv(argv: Sequence[str]) -> Tuple[List[str], List[str]]:
    """(the other arguments, the overrides "model.field=value") of a command line."""
    rest, overrides = [], []
    for argument in argv:
        if argument.startswith(PREFIX):
            overrides.append(argument[len(PREFIX) :])
        else:
            rest.append(argument)
    return rest, overrides


def parse(overrides: Sequence[str]) -> dict:
    """{section: {field: value}} of overrides "section.field=value", each value
    parsed by its field's type.

    Raises:
      ValueError: an unknown section or field (the message lists the known
        ones), a missing "=", or a value that does not parse.
    """
    parsed = {section: {} for section in SECTIONS}
    for override in overrides:
        path, equals, text = override.partition("=")
        section, _, name = path.partition(".")
        if not equals or not name:
            raise ValueError(
                f"--config.{override}: write --config.SECTION.FIELD=VALUE, e.g. "
                "--config.model.update_probability=0.5."
            )
        if section not in SECTIONS:
            raise ValueError(
                f"--config.{override}: unknown section {section!r}; the sections "
                f"are {', '.join(SECTIONS)}."
            )
        fields = typing.get_type_hints(SECTIONS[section])
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=1)
            raise ValueError(
                f"--config.{override}: {SECTIONS[section].__name__} has no field "
                f"{name!r}{f' (did you mean {close[0]}?)' if close else ''}; its fields "
                f"are {', '.join(fields)}."
            )
        try:
            parsed[section][name] = _value(text, fields[name])
        except ValueError as error:
            raise ValueError(f"--config.{override}: {error}") from None
    return parsed


def apply(
    preset: Preset, run: RunConfig, overrides: Sequence[str], sections: Sequence[str] = SECTIONS
) -> Tuple[Preset, RunConfig]:
    """The preset and run settings with ``overrides`` applied and validated;
    only ``sections`` may be overridden (a script's own).

    Raises:
      ValueError: a bad override (see ``parse``), one of another section, or
        a config that the new values make invalid (the config's own message).
    """
    parsed = parse(overrides)
    refused = [name for name in SECTIONS if parsed[name] and name not in sections]
    if refused:
        raise ValueError(
            f"--config.{refused[0]}.* does not apply here; this script takes "
            f"{', '.join(f'--config.{name}.*' for name in sections)}."
        )
    try:
        model = dataclasses.replace(preset.model, **parsed["model"])
        train = dataclasses.replace(preset.train, **parsed["train"])
        run = dataclasses.replace(run, **parsed["run"])
    except ValueError as error:
        raise ValueError(f"{describe(overrides)}: {error}") from None
    return dataclasses.replace(preset, model=model, train=train), run


def describe(overrides: Sequence[str]) -> str:
    """The overrides as the run's header shows them."""
    return ", ".join(overrides)


def _value(text: str, kind):
    """``text`` as a value of the type ``kind`` (int, float, bool, str, an
    Optional of those, or a tuple of ints)."""
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Union:  # Optional[X]
        if text.strip().lower() in ("none", "null", ""):
            return None
        kind = next(argument for argument in arguments if argument is not type(None))
        origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if origin is tuple:
        items = [item.strip() for item in text.strip("()[] ").split(",") if item.strip()]
        try:
            return tuple(int(item) for item in items)
        except ValueError:
            raise ValueError(f"expected whole numbers separated by commas, got {text!r}.") from None
    if kind is bool:
        if text.strip().lower() not in _TRUE + _FALSE:
            raise ValueError(f"expected true or false, got {text!r}.")
        return text.strip().lower() in _TRUE
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise ValueError(
                f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}."
            ) from None
    return text
