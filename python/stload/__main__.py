"""The stload command-line tool, as ``python -m stload ARGS`` and as the ``stload`` command that
``pip install`` puts on PATH: both run the native CLI the wheel carries in ``stload/_bin/``.

    python -m stload inspect path/to/model
    python -m stload --help
"""

import os
import sys
from pathlib import Path


def _cli_path() -> Path:
    return Path(__file__).resolve().parent / "_bin" / "stload"


def main() -> None:
    cli = _cli_path()
    if not os.access(cli, os.X_OK):
        sys.exit(
            f"stload: error: this installation of the stload package has no command-line tool "
            f"({cli} is missing): install the package with pip (pip install .), or use the "
            f"`stload` binary of a CMake build (build/tools/stload)"
        )
    # exec, not a subprocess: signals, exit codes and /proc/self/exe (which `stload bench` uses to
    # start its measured loads) are the native tool's own.
    os.execv(cli, [str(cli), *sys.argv[1:]])


if __name__ == "__main__":
    main()
