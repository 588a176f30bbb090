"""Frames for the live loop: a reader thread that keeps only the newest frame.

Fusion must never fall behind without bound: when it is slower than the source, a frame that arrives
while another is waiting replaces it, and the replaced one is counted as dropped. A recording (dataset
folder, video file) is played at its own pace (its timestamps), as a camera would deliver it; a scripted
run can instead take every frame, the reader waiting for the loop (``pace`` and ``drop`` off). A
recording's reader that falls behind its pace (decoding competes with fusion for the cores) passes over
the frames whose successor is already due without decoding them, as a camera would have replaced them
(:meth:`heightfusion.datasets.Sequence.iter_frames`); they count as dropped.
"""

from __future__ import annotations

import dataclasses

import threading
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from ..camera import PinholeCamera
from ..datasets.frame import Frame


class LatestFrameSource:
    """Runs ``frames`` on a thread and hands the loop the newest frame.

    Args:
        frames: the frames, in order (a dataset sequence, a video, a camera). One with an ``iter_frames(stale)``
            method (a dataset sequence) is read through it when paced with drops (module docstring).
        pace: wait between frames as their timestamps say (real-time playback of a recording; off for
            a camera, which paces itself).
        drop: replace a waiting frame by a newer one (counted in ``dropped``); off: the reader waits
            until the loop has taken it.
        prepare: optional work done on the reader thread for each frame before it is offered (e.g.
            marker pose estimation); returns the frame to offer.
    """

    def __init__(
        self, frames: Iterable[Frame], pace: bool = True, drop: bool = True, prepare: Callable[[Frame], Frame] | None = None
    ) -> None:
        self._frames = frames
        self._pace = pace
        self._drop = drop
        self._prepare = prepare
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._stop = False
        self.finished = False
        self.error: str | None = None  # why the source ended early (a camera that disconnected...)
        self.read = 0
        self.dropped = 0
        self._clock: tuple[float, float] | None = None  # (wall time, timestamp) of the first frame when paced
        self._thread = threading.Thread(target=self._run, name="heightfusion-frames", daemon=True)

    @property
    def drops(self) -> bool:
        """Whether a frame the loop has not taken yet is replaced by a newer one (``drop``)."""
        return self._drop

    def start(self) -> LatestFrameSource:
        self._thread.start()
        return self

    def _due_in(self, timestamp: float) -> float:
        """Seconds until the paced frame at ``timestamp`` is due (negative: overdue)."""
        start_wall, start_stamp = self._clock
        return (timestamp - start_stamp) - (time.perf_counter() - start_wall)

    def _stale(self, next_timestamp: float) -> bool:
        """Whether the frame before the one at ``next_timestamp`` is to be passed over (that one is due): counted
        as dropped."""
        if self._clock is None or self._due_in(next_timestamp) > 0:
            return False
        with self._cond:
            self.dropped += 1
        return True

    def _run(self) -> None:
        reader = getattr(self._frames, "iter_frames", None)
        frames = reader(self._stale) if self._pace and self._drop and reader is not None else self._frames
        try:
            for frame in frames:
                if self._pace:
                    if self._clock is None:
                        self._clock = (time.perf_counter(), frame.timestamp)
                    delay = self._due_in(frame.timestamp)
                    if delay > 0:
                        time.sleep(delay)
                if self._prepare is not None:
                    frame = self._prepare(frame)
                with self._cond:
                    while not self._drop and self._slot is not None and not self._stop:
                        self._cond.wait()
                    if self._stop:
                        return
                    if self._slot is not None:
                        self.dropped += 1
                    self._slot = frame
                    self.read += 1
                    self._cond.notify_all()
        except Exception as exc:  # a broken source ends the run with a message, never a traceback
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._cond:
                self.finished = True
                self._cond.notify_all()

    def next(self, timeout: float | None = None) -> Frame | None:
        """The newest frame not yet taken, waiting up to ``timeout`` s; None if none came (or the end)."""
        with self._cond:
            if self._slot is None and not self.finished:
                self._cond.wait(timeout)
            frame, self._slot = self._slot, None
            self._cond.notify_all()
            return frame

    @property
    def exhausted(self) -> bool:
        """The source has ended and every frame it offered was taken or dropped."""
        with self._cond:
            return self.finished and self._slot is None

    def stop(self) -> None:
        """End the reader thread (it finishes the frame it is reading)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=2.0)


class BoardPoses:
    """A reader-thread step that sets each frame's ``T_wc`` from the marker board on the floor.

    Frames where the board is not found get ``T_wc = None``; ``reason`` then says why (the latest
    such frame's), for the app to show. ``spec`` is a :class:`heightfusion.markers.BoardSpec`.
    """

    def __init__(self, spec) -> None:
        self.spec = spec
        self.reason: str | None = None
        self._estimators: dict[PinholeCamera, object] = {}

    def __call__(self, frame: Frame) -> Frame:
        from ..markers import MarkerPoseEstimator

        if frame.camera not in self._estimators:
            self._estimators[frame.camera] = MarkerPoseEstimator(self.spec, frame.camera)
        estimator = self._estimators[frame.camera]
        pose = estimator.estimate(frame.image) if frame.image is not None else None
        frame.T_wc = None if pose is None else pose.T_wc
        self.reason = None if pose is not None else (estimator.reason if frame.image is not None else "no image")
        return frame


def capture_device(text: str) -> int | str:
    """A ``--camera`` value: a device number, or a stream URL / pipeline / file that OpenCV can open."""
    return int(text) if text.isdigit() else text


def open_camera(device: int | str, camera: PinholeCamera | None, max_frames: int | None = None) -> Iterator[Frame]:
    """Frames of an OpenCV capture ``device`` (an index, or a stream URL or file OpenCV can open).

    The device is opened here, so that a missing camera is an error before any window opens; the
    frames end when the camera stops delivering (it disconnected, the stream ended). Images are
    resized to ``camera``'s size when it differs from the capture size, and undistorted when it has
    lens distortion (the frames' camera then has none); without ``camera``, the intrinsics are
    guessed (60 degree horizontal field of view).
    Raises ValueError when the device cannot be opened.
    """
    import cv2

    # Each OpenCV backend that fails to open the device logs its own warning; the error below says it once.
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        capture = cv2.VideoCapture(device)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if not capture.isOpened():
        raise ValueError(f"camera {device}: OpenCV could not open it (no such device, or in use)")
    return _capture_frames(capture, camera, max_frames)


def _capture_frames(capture, camera: PinholeCamera | None, max_frames: int | None) -> Iterator[Frame]:
    import cv2

    try:
        count = 0
        while max_frames is None or count < max_frames:
            ok, bgr = capture.read()
            if not ok or bgr is None:
                return
            if camera is None:
                camera = _guess_camera(bgr.shape[1], bgr.shape[0])
            if (bgr.shape[1], bgr.shape[0]) != (camera.width, camera.height):
                bgr = cv2.resize(bgr, (camera.width, camera.height), interpolation=cv2.INTER_AREA)
            yield Frame(time.monotonic(), cv2.cvtColor(camera.undistort_image(bgr), cv2.COLOR_BGR2RGB), None, None,
                        dataclasses.replace(camera, distortion=None), count)
            count += 1
    finally:
        capture.release()


def _guess_camera(width: int, height: int) -> PinholeCamera:
    f = 0.5 * width / np.tan(np.radians(30.0))
    return PinholeCamera(width, height, f, f, (width - 1) / 2, (height - 1) / 2)
