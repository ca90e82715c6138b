"""`--help` for the console scripts.

absl's `--help` lists the flags and prints the docstring of the `__main__` module, which for an
installed console script is the entry-point wrapper: no docstring, and its flags live in the CLI
module, so `slmjax-train --help` listed nothing. `adopt(module)` makes the CLI module's docstring
and flags those `--help` shows.
"""

from __future__ import annotations

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
