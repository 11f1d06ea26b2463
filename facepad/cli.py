"""Command-line interface: parses options and calls into the pipeline modules.

Exit status: 0 on success, 1 when a batch command processed no photo at all, 2 for
usage errors and invalid input (a `FacepadError`, printed as one line).
"""

from __future__ import annotations

import logging
import sys

import typer

from facepad.errors import FacepadError

app = typer.Typer(
    name="facepad",
    help="Embeddings and 0-1 scores of facial fat-pad regions (cheek and under-eye).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _configure(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )


# Commands are registered below, one function per command.


def main() -> None:
    """Run the CLI, printing a `FacepadError` as one line instead of a traceback."""
    try:
        app()
    except FacepadError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
