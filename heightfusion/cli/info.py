"""``heightfusion info``: which OpenGL implementation the GL backends run on."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    from ..render import context

    try:
        print(context.describe())
    except context.GLUnavailableError as exc:
        print(f"heightfusion info: no OpenGL: {exc}", file=sys.stderr)
        return 1
    return 0
