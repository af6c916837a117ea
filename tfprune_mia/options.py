"""The options of one component (a pruner, a defense): a small frozen dataclass that validates itself, writes its
own cache-key fragment and names the command-line flag of each field.

In the spirit of tfmot's `PruningSchedule` objects, each method carries only its own settings; a flat record
shared by every method let callers that rebuilt it from a few fields silently drop the others.

Flag rule: field `f` of a class with `flag_prefix = "p"` is the flag `--p_f` (`--f` without a prefix), unless
the field's metadata names another flag (`option(..., flag="...")`). The binaries build options through this rule
only, so a new field cannot be forgotten there (tests/bin/test_config_flags.py sets every one).
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Type, TypeVar

from tfprune_mia.errors import ConfigError

T = TypeVar("T", bound="Options")


def short(value) -> str:
    """A key-friendly rendering that keeps distinct values distinct: `:g` where it round-trips, repr otherwise."""
    if isinstance(value, float):
        text = f"{value:g}"
        return text if float(text) == value else repr(value)
    return str(value)


def option(default, *, flag: Optional[str] = None, key: Optional[str] = None):
    """A field with a non-default flag name and/or key label (the label is written before the value)."""
    metadata = {}
    if flag is not None:
        metadata["flag"] = flag
    if key is not None:
        metadata["key"] = key
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Options:
    """Base of every component's options. Subclasses add fields and override `validate`."""

    flag_prefix: ClassVar[str] = ""

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError (naming the flag and a valid value) for a setting that cannot work."""

    @classmethod
    def flag_names(cls) -> Dict[str, str]:
        """field name -> flag name (without dashes)."""
        return {field.name: field.metadata.get("flag") or
                (f"{cls.flag_prefix}_{field.name}" if cls.flag_prefix else field.name)
                for field in dataclasses.fields(cls)}

    def key_parts(self) -> List[str]:
        """The fields that differ from their defaults as `<label><value>`: nothing for the defaults (so adding an
        option leaves existing keys alone), and distinct parts for distinct values."""
        parts = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value != field.default:
                parts.append(f"{field.metadata.get('key', field.name)}{short(value)}")
        return parts

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: Type[T], data: Mapping[str, Any]) -> T:
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"{cls.__name__} has no option {', '.join(unknown)}; its options are: "
                              f"{', '.join(names) or '(none)'}")
        return cls(**data)

    @classmethod
    def resolve(cls: Type[T], options: Optional["Options"], owner: str) -> T:
        """None -> the defaults; options of another component -> ConfigError naming the right class."""
        if options is None:
            return cls()
        if type(options) is not cls:
            raise ConfigError(f"{owner} takes options={cls.__name__}(...), not {type(options).__name__}; "
                              f"pass {cls.__name__}(...) or leave options=None for its defaults")
        return options


@dataclasses.dataclass(frozen=True)
class NoOptions(Options):
    """For components without settings of their own."""


def options_from_record(options_class: Type[Options], rest: Mapping[str, Any], expected: str) -> Options:
    """The options in what is left of a config's dict once its own fields (`expected`) are taken: the `options`
    entry, read exactly; or, in a record written before options existed, the flat fields, which were named like
    the flags (`admm_rho`, `dp_clip`, ...); there the other components' fields are ignored."""
    if "options" not in rest:
        return options_class(**{field: rest[flag] for field, flag in options_class.flag_names().items()
                                if flag in rest})
    unknown = sorted(set(rest) - {"options"})
    if unknown:
        raise ConfigError(f"config has unknown fields {', '.join(unknown)}; expected {expected} and options")
    return options_class.from_dict(rest["options"])
