"""Motion stereo in a child process, so that it runs beside the caller's fusion and drawing.

A thread does not overlap them on a CPU: moderngl holds the GIL while llvmpipe renders and reads back,
and the stereo's many small torch calls wait for it. A child Python process has its own GIL. It is
started as ``python -c`` :data:`CHILD_CODE` (not by :mod:`multiprocessing`, whose ``spawn`` re-imports the
caller's main script, so every script would need a ``__main__`` guard, and whose ``fork`` copies a
process holding a GL context and threads) and speaks pickle over its stdin and stdout: first the
settings, then one frame per request, one reply per frame.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ..camera import PinholeCamera


#: What the child runs. Not ``-m heightfusion.depth.worker``: runpy would run this module a second time beside
#: the package's import of it, and warn so in every run.
CHILD_CODE = "from heightfusion.depth.worker import main; main()"


class StereoWorkerError(RuntimeError):
    """The stereo process could not be started or has ended."""


class StereoProcess:
    """A :class:`heightfusion.depth.MotionStereo` in a child process: :meth:`push` as the in-process one's.

    The child keeps the keyframe window, so frames must be pushed in order. :meth:`close` ends it (also
    when the object is garbage-collected).

    Args:
        stereo, keyframes: the MotionStereo settings (None: defaults).
    """

    def __init__(self, stereo=None, keyframes=None) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        # The child imports this very heightfusion, installed or not.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        try:
            self._child = subprocess.Popen([sys.executable, "-c", CHILD_CODE], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, env=env)
        except OSError as exc:
            raise StereoWorkerError(f"could not start the stereo process: {exc}") from exc
        self._send((stereo, keyframes))

    def push(self, camera: PinholeCamera, T_wc: np.ndarray, image: np.ndarray, timestamp: float | None = None,
             pose_covariance: np.ndarray | None = None):
        """(MotionStereoResult, ms the child's stereo took) of the frame (:meth:`MotionStereo.push`); the
        child's ValueError (a bad image or pose) is raised here.

        Raises:
            StereoWorkerError: the child has ended.
        """
        self._send((camera, np.asarray(T_wc), np.asarray(image), timestamp, pose_covariance))
        try:
            kind, value, ms = pickle.load(self._child.stdout)
        except (EOFError, OSError, pickle.UnpicklingError) as exc:
            raise StereoWorkerError(f"the stereo process ended (exit code {self._child.poll()})") from exc
        if kind == "error":
            raise value
        return value, ms

    def close(self) -> None:
        """End the child: it exits when its input closes (killed if it has not within 10 s)."""
        child = getattr(self, "_child", None)
        if child is None or child.poll() is not None:
            return
        try:
            child.stdin.close()
            child.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            child.kill()
            child.wait()
        finally:
            child.stdout.close()

    def __del__(self) -> None:
        self.close()

    def _send(self, message) -> None:
        try:
            pickle.dump(message, self._child.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._child.stdin.flush()
        except OSError as exc:
            raise StereoWorkerError(f"the stereo process ended (exit code {self._child.poll()})") from exc


def serve(requests, replies) -> None:
    """The child's loop: settings, then (camera, T_wc, image, timestamp, pose_covariance) -> ("ok", MotionStereoResult, ms) or
    ("error", ValueError, 0.0), until ``requests`` ends."""
    from .motion import MotionStereo

    try:
        motion = MotionStereo(*pickle.load(requests))
    except EOFError:  # the caller went before it sent the settings
        return
    while True:
        try:
            frame = pickle.load(requests)
        except EOFError:
            return
        start = time.perf_counter()
        try:
            reply = ("ok", motion.push(*frame), (time.perf_counter() - start) * 1e3)
        except ValueError as exc:  # the frame's fault: the caller skips it, the window goes on
            reply = ("error", exc, 0.0)
        pickle.dump(reply, replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()


def main() -> None:
    """The child process: :func:`serve` over stdin and stdout."""
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # the replies' pipe is for replies only
    serve(requests, replies)
