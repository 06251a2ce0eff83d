"""The stload command-line tool, as ``python -m stload ARGS`` and as the ``stload`` command that
``pip install`` puts on PATH: both run the native CLI the wheel carries in ``stload/_bin/``. A
package installed by CMake (``cmake --install``) has no ``_bin/``; it runs the native ``stload``
on PATH that the same install put in ``<prefix>/bin``.

    python -m stload inspect path/to/model
    python -m stload --help
"""

import os
import shutil
import sys
from pathlib import Path


def _is_native(path: Path) -> bool:
    # Not a script: the console script `stload` that pip writes would run this module again.
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _cli_path() -> Path:
    bundled = Path(__file__).resolve().parent / "_bin" / "stload"
    if os.access(bundled, os.X_OK):
        return bundled
    on_path = shutil.which("stload")
    if on_path and _is_native(Path(on_path)):
        return Path(on_path)
    return bundled


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
