"""``heightfusion info``: where heightfusion would run: the OpenGL implementation of the GL backends and the
torch device of motion stereo (``--stereo-device auto``)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    from ..render import context

    try:
        print(f"OpenGL: {context.describe()}")
    except context.GLUnavailableError as exc:
        print(f"heightfusion info: no OpenGL: {exc}", file=sys.stderr)
        return 1
    print(f"stereo: {stereo_device()}")
    return 0


def stereo_device() -> str:
    """The device ``StereoConfig(device="auto")`` picks, with the GPU's name, or why it is the CPU."""
    import torch

    from ..depth.stereo import resolve_device

    device = resolve_device("auto")
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)}; torch {torch.__version__})"
    return f"cpu (torch {torch.__version__} sees no CUDA device)"
