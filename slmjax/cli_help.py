"""`--help` for the console scripts.

absl's `--help` lists the flags and prints the docstring of the `__main__` module, which for an
installed console script is the entry-point wrapper: no docstring, and its flags live in the CLI
module, so `slmjax-train --help` listed nothing. `adopt(module)` makes the CLI module's docstring
and flags those `--help` shows.

The path flags of the console scripts (and of tools/) are defined with `DEFINE_path`,
`DEFINE_path_list` and `DEFINE_config_file` here, which expand a leading `~` of the value.
"""

from __future__ import annotations

import os
import sys

from absl import flags


def adopt(module_name: str) -> None:
    """Show `module_name`'s docstring and flags on `--help` when it is not `__main__` itself."""
    main = sys.modules.get("__main__")
    module = sys.modules[module_name]
    if main is None or main is module:
        return
    if not main.__doc__:
        main.__doc__ = module.__doc__
    fv = flags.FLAGS
    for flag in fv.get_flags_for_module(module_name):
        fv.register_key_flag_for_module(sys.argv[0], flag)


# Paths. `--flag=~/x` reaches the program with the `~` in it: a shell expands a leading `~` only at
# the start of a word or after `=` in an assignment (X=~/x), not after `--flag=`. The path flags of
# the console scripts and tools/ are defined with the DEFINE_* below, which expand a leading `~` or
# `~user` once, as the value is parsed; any other path, relative ones included, is kept as given.
# (slmjax-sweep's --root, --repo_dir and --venv are not among them: with --launcher=tpu they are
# the workers' paths, and slmjax/launch/cli.py expands them for the other launchers.)
# They are wrappers: a flag belongs to (and `--help` lists it under) the module that calls them,
# as with absl's own DEFINE_*.
flags.disclaim_key_flags()


def expand_path(value: str) -> str:
    """``value`` with a leading ``~`` / ``~user`` expanded (os.path.expanduser); else unchanged."""
    return os.path.expanduser(value) if value.startswith("~") else value


class _PathParser(flags.ArgumentParser):
    """A string flag holding a path, or ``comma_separated`` paths (each item expanded)."""

    def __init__(self, comma_separated: bool = False):
        self._comma_separated = comma_separated

    def parse(self, argument):
        argument = super().parse(argument)
        if self._comma_separated:
            return ",".join(expand_path(item) for item in argument.split(","))
        return expand_path(argument)

    def flag_type(self) -> str:
        return "string"


class _PathListParser(flags.ListParser):
    """A comma-separated list flag of paths, each item expanded."""

    def parse(self, argument):
        return [expand_path(item) for item in super().parse(argument)]


def DEFINE_path(name: str, default: str | None, help: str, *, comma_separated: bool = False,
                **kwargs) -> flags.FlagHolder:  # noqa: N802 (absl's naming)
    """``flags.DEFINE_string`` for a path (or, ``comma_separated``, several in one string): a
    leading ``~`` of the value (of each item) is expanded."""
    return flags.DEFINE(_PathParser(comma_separated), name, default, help,
                        serializer=flags.ArgumentSerializer(), **kwargs)


def DEFINE_path_list(name: str, default, help: str, **kwargs) -> flags.FlagHolder:  # noqa: N802
    """``flags.DEFINE_list`` of paths: a leading ``~`` of each item is expanded."""
    return flags.DEFINE(_PathListParser(), name, default, help,
                        serializer=flags.CsvListSerializer(","), **kwargs)


def DEFINE_config_file(name: str, default: str | None = None, help: str = "path to config file.",
                       **kwargs) -> flags.FlagHolder:  # noqa: N802
    """``config_flags.DEFINE_config_file`` whose file part (before the first ``:``) has a leading
    ``~`` expanded, in the loaded config and in ``config_flags.get_config_filename`` alike."""
    from ml_collections import config_flags

    holder = config_flags.DEFINE_config_file(name, default, help, **kwargs)
    flag = kwargs.get("flag_values", flags.FLAGS)[name]
    parse = flag._parse   # the config flag loads the file and keeps the argument as its filename

    def _parse(argument):
        if isinstance(argument, str):
            path, colon, rest = argument.partition(":")
            argument = expand_path(path) + colon + rest
        return parse(argument)

    flag._parse = _parse
    return holder
