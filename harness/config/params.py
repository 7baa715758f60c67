"""The parameter registry: every launcher parameter, its config section, type, default and flags.

The registry is derived from the typed config sections (each default, help line and rule is
declared once, on its dataclass field); it adds only the command-line spellings. One table drives the command-line parser, the config builder, the `missing_params` check and the
validation of `--set`, so a parameter cannot exist in one place and be forgotten in another.
Leaf names are unique across sections (as in the reference's config.json), which is what lets a
flag name and a config leaf be the same word.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields
from typing import Any

from gainakt.config import MODEL_PRESETS, SECTION_TYPES, field_default

__all__ = ["BY_NAME", "MODEL_PRESETS", "PARAMS", "Param", "RESULT_SECTIONS", "SECTION_ORDER"]

# Sections whose leaves determine results (hashed); order is the order written in config.json.
RESULT_SECTIONS = (
    "data",
    "data_checksum",
    "model",
    "heads",
    "training",
    "interpretability",
    "alignment",
    "retention_lag",
    "scheduling",
    "stability_controls",
    "sampling",
    "determinism",
    "seeds",
)


@dataclass(frozen=True)
class Param:
    """One launcher parameter. `flags` are extra spellings accepted on the command line."""

    name: str
    section: str
    type: type
    default: Any
    help: str
    flags: tuple[str, ...] = ()
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    # Booleans get --name / --no_name / --no-name unless custom off-spellings are given.
    off_flags: tuple[str, ...] = field(default=())


# Extra command-line spellings (the guide's and the reference's); everything else is declared once,
# in the config sections (gainakt.config and harness.config.schema).
FLAG_ALIASES: dict[str, tuple[str, ...]] = {
    "seq_len": ("--max_len",),
    "num_encoder_blocks": ("--n_blocks",),
    "epochs": ("--num_epochs",),
    "learning_rate": ("--lr",),
    "mixed_precision": ("--amp", "--use_amp"),
}
OFF_FLAGS: dict[str, tuple[str, ...]] = {"mixed_precision": ("--no_amp", "--no-amp")}

_PLAIN_TYPES = (bool, int, float, str, list)


def _plain_type(hint: Any) -> type:
    """bool/int/float/str/list of a field annotation (``str | None`` -> str)."""
    origin = typing.get_origin(hint)
    if origin is list:
        return list
    for candidate in (hint, *typing.get_args(hint)):
        if candidate in _PLAIN_TYPES:
            return candidate
    raise TypeError(f"unsupported parameter type {hint!r}")


def _params_of(section: str, cls: type) -> list[Param]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        derived = f.metadata.get("derived")
        nullable = derived is not None or type(None) in typing.get_args(hints[f.name])
        default = None if derived else field_default(cls, f.name)
        out.append(Param(f.name, section, _plain_type(hints[f.name]), default, f.metadata["help"],
                         flags=FLAG_ALIASES.get(f.name, ()), choices=f.metadata.get("choices"),
                         nullable=nullable, off_flags=OFF_FLAGS.get(f.name, ())))
    return out


def _registry() -> tuple[Param, ...]:
    from harness.config.schema import ExperimentParams, RuntimeParams

    params = _params_of("experiment", ExperimentParams)
    for section, cls in SECTION_TYPES.items():
        params += _params_of(section, cls)
    params += _params_of("runtime", RuntimeParams)
    return tuple(params)


PARAMS: tuple[Param, ...] = _registry()

BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}

SECTION_ORDER = (
    "schema_version",
    "experiment",
    *RESULT_SECTIONS,
    "runtime",
    "paths",
)
