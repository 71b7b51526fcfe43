"""The ``mfr`` command's training flags, generated from :class:`TrainConfig`'s fields (each
field's help, choices and aliases live in its metadata), and the run configuration they resolve to:
the command's defaults, then ``--config``, then the flags given, then ``--set``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when a command runs, so that `mfr --help` stays fast
    from mfr.experiments.config import TrainConfig

__all__ = ["add_training_args", "train_config", "tuned_config_of", "user_fields"]

#: Per command, the TrainConfig fields it sets otherwise than TrainConfig's defaults (a protocol
#: trains many runs, so shorter ones; a single run evaluates and checkpoints as it goes), and the
#: fields it takes no flag for (a protocol chooses the method and seed of each run itself).
_COMMAND_DEFAULTS: dict[str, dict[str, Any]] = {
    "reproduce": {"steps": 150},
    "train": {"steps": 300, "eval_every": 100, "checkpoint_every": 50},
}
_NO_FLAG = {"reproduce": ("method", "seed"), "train": ()}


def given_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields given as flags on the command line (a flag not given leaves no
    attribute: its default is ``argparse.SUPPRESS``)."""
    import dataclasses

    from mfr.experiments.config import TrainConfig

    return {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The run's configuration: the command's defaults, then the ``--config`` file, then the flags
    given on the command line, then ``--set``."""
    from mfr.experiments.config import config_from_mapping, parse_config_file, parse_set

    fields = dict(_COMMAND_DEFAULTS[args.command])
    if args.config:
        fields.update(parse_config_file(args.config))
    fields.update(given_fields(args))
    fields.update(parse_set(args.set))
    return config_from_mapping(fields, "the command line")


def user_fields(args: argparse.Namespace) -> set[str]:
    """TrainConfig fields the user set (flags given on the command line, the ``--config`` file,
    ``--set``): a method's tuned setting never replaces them, even where they equal the default."""
    from mfr.experiments.config import parse_config_file, parse_set

    fields = set(given_fields(args))
    if args.config:
        fields |= set(parse_config_file(args.config))
    return fields | set(parse_set(args.set))


def tuned_config_of(args: argparse.Namespace, config: TrainConfig) -> TrainConfig:
    """``mfr train``'s configuration with the method's tuned setting (unless ``--untuned``)."""
    from mfr.experiments.tuned import tuned_config

    return config if args.untuned else tuned_config(config, user_fields(args))


def add_training_args(p: argparse.ArgumentParser, command: str) -> None:
    """The data flags, then one flag per TrainConfig field (its help, choices and aliases from the
    field's metadata; ``--set`` reaches every field too)."""
    import dataclasses

    from mfr.experiments.config import TrainConfig, parse_field

    p.add_argument(
        "--data",
        default=None,
        help="folder <root>/<domain>/<identity>/<image>; default: the built-in synthetic domains",
    )
    p.add_argument("--synthetic-domains", type=int, default=4, help=argparse.SUPPRESS)
    p.add_argument("--synthetic-ids", type=int, default=40, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch and mfr)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="TOML or YAML file of TrainConfig fields (any of them); flags given on the command line win over it",
    )
    p.add_argument(
        "--untuned",
        action="store_true",
        help="TrainConfig's plain defaults for every method instead of its tuned setting (mfr.experiments.tuned)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set any TrainConfig field (repeatable); wins over --config and the flags",
    )
    fields = p.add_argument_group("training (TrainConfig's fields)")
    defaults = _COMMAND_DEFAULTS[command]
    for f in dataclasses.fields(TrainConfig):
        if f.name in _NO_FLAG[command]:
            continue
        default = defaults.get(f.name, f.default)
        shown = "none" if default is None else ("off" if default is False else default)
        names = [f"--{f.name.replace('_', '-')}", *f.metadata["aliases"]]
        help_text = f"{f.metadata['help']} (default: {shown})"
        if f.type == "bool":
            fields.add_argument(
                *names, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text
            )
            continue
        choices = f.metadata["choices"]
        optional = "None" in str(f.type)
        fields.add_argument(
            *names,
            dest=f.name,
            default=argparse.SUPPRESS,
            type=_FieldType(f.name, str(f.type), parse_field),
            choices=[*choices, None] if choices and optional else (list(choices) or None),
            metavar="{" + ",".join(map(str, choices)) + (",off}" if optional else "}") if choices else None,
            help=help_text,
        )


class _FieldType:
    """A flag's value as its TrainConfig field takes it; argparse names the type by ``repr``."""

    def __init__(self, name: str, kind: str, parse: Any) -> None:
        self.name, self.kind, self.parse = name, kind, parse

    def __call__(self, text: str) -> Any:
        return self.parse(self.name, text)

    def __repr__(self) -> str:
        return self.kind
