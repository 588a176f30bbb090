"""A mapping run recorded for the Rerun viewer (``--rerun FILE.rrd`` / ``--rerun-spawn`` on replay and live).

:class:`RerunLog` is a :class:`heightfusion.sinks.FrameSink`; the rerun SDK (optional extra ``rerun``, pinned
to :data:`RERUN_VERSION`) is imported when one is made, never with ``heightfusion``. Entities, in the map's
world frame (Z up):

- ``world``: view coordinates (right-handed, Z up), static;
- ``world/camera``: ``Transform3D``, the frame's pose T_wc (camera to world);
- ``world/camera/image``: ``Pinhole`` (OpenCV axes, so the viewer draws the frustum) and the image (JPEG);
- ``world/camera/depth``: ``Pinhole`` at the depth's resolution and the depth fused (``DepthImage``, mm);
- ``world/map``: ``Mesh3D`` of the observed triangles, vertices (x, y, height) with their colours, every
  ``mesh_every`` fused frames and at the end (it is the largest entity).

Timelines: ``frame`` (the frame's index in its sequence) and ``time`` (its timestamp, seconds).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from .camera import PinholeCamera
from .datasets.frame import Frame
from .heightmap import HeightMap

#: The rerun-sdk release this module is written and tested against (the ``rerun`` extra pins it).
RERUN_VERSION = "0.41.0"
INSTALL_HINT = f"pip install 'heightfusion[rerun]' (rerun-sdk=={RERUN_VERSION})"
#: Fused frames between two logs of the map mesh, by default.
DEFAULT_MESH_EVERY = 10
#: Entity paths a recording holds (see the module docstring).
CAMERA, IMAGE, DEPTH, MAP = "world/camera", "world/camera/image", "world/camera/depth", "world/map"
_JPEG_QUALITY = 90
_DEPTH_UNITS_PER_METRE = 1000.0  # depth stored as uint16 millimetres: half the bytes of float32, 65 m range


class RerunUnavailableError(RuntimeError):
    """The rerun SDK is not installed (the CLI prints it as one line, exit status 2)."""


def import_rerun():
    """The ``rerun`` module, or :class:`RerunUnavailableError` saying how to install it."""
    try:
        import rerun
    except ImportError:
        raise RerunUnavailableError(f"--rerun needs the rerun SDK, which is not installed: {INSTALL_HINT}") from None
    return rerun


class RerunLog:
    """Logs a run's frames, depth, poses and map mesh to a ``.rrd`` file and/or a spawned Rerun viewer.

    Args:
        path: ``.rrd`` file to write (its folder must exist), or None.
        spawn: also start a Rerun viewer and stream to it.
        mesh_every: log the map mesh every this many fused frames (and at :meth:`log_map`).
        name: the recording's name in the viewer.

    Use it as a context manager (or call :meth:`close`): the file is complete once closed.

    Example:
        >>> import heightfusion as hf
        >>> from heightfusion.rerun_log import RerunLog
        >>> with RerunLog("run.rrd") as log:  # doctest: +SKIP
        ...     result = hf.replay(max_frames=3, sink=log)
        ...     log.log_map(result.grid)
    """

    def __init__(self, path: str | os.PathLike | None = None, spawn: bool = False,
                 mesh_every: int = DEFAULT_MESH_EVERY, name: str = "heightfusion") -> None:
        if path is None and not spawn:
            raise ValueError("a Rerun log needs a file to write or a viewer to spawn")
        if not (isinstance(mesh_every, int) and mesh_every >= 1):
            raise ValueError(f"--rerun-mesh-every must be a positive number of frames, got {mesh_every!r}")
        if path is not None and not Path(path).parent.is_dir():
            raise ValueError(f"--rerun {path}: folder {Path(path).parent} does not exist")
        rr = import_rerun()
        self._rr = rr
        self.mesh_every = mesh_every
        self.fused = 0
        self._cameras: dict[str, PinholeCamera] = {}
        self.rec = rr.RecordingStream("heightfusion")
        sinks = []
        if spawn:
            self.rec.spawn(connect=False)  # starts the viewer; the gRPC sink below streams to it
            sinks.append(rr.GrpcSink())
        if path is not None:
            sinks.append(rr.FileSink(str(path)))
        self.rec.set_sinks(*sinks)
        self.rec.send_recording_name(name)
        self.rec.log("world", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)

    def log_frame(self, frame: Frame, depth: np.ndarray | None, grid: HeightMap | None) -> None:
        """Log ``frame``'s pose and image, the ``depth`` fused (None: skipped) and, every ``mesh_every`` fused
        frames, ``grid``'s mesh, at the frame's index and timestamp."""
        rr = self._rr
        self.rec.set_time("frame", sequence=int(frame.index))
        self.rec.set_time("time", duration=float(frame.timestamp))
        if frame.T_wc is not None:
            self.rec.log(CAMERA, rr.Transform3D(translation=frame.T_wc[:3, 3], mat3x3=frame.T_wc[:3, :3]))
        if frame.image is not None:
            self._pinhole(IMAGE, frame.camera)
            self.rec.log(IMAGE, rr.Image(frame.image).compress(jpeg_quality=_JPEG_QUALITY))
        if depth is None:
            return
        # Stereo and the fusion pyramid may give depth at a lower resolution than the image.
        camera = frame.camera if depth.shape == frame.camera.shape else frame.camera.scaled(depth.shape[1] / frame.camera.width)
        self._pinhole(DEPTH, camera)
        self.rec.log(DEPTH, rr.DepthImage(_millimetres(depth), meter=_DEPTH_UNITS_PER_METRE))
        self.fused += 1
        if grid is not None and (self.fused - 1) % self.mesh_every == 0:
            self.log_map(grid)

    def log_map(self, grid: HeightMap) -> None:
        """Log ``grid``'s observed triangles as a coloured mesh (nothing while none is observed)."""
        mesh = observed_mesh(grid)
        if mesh is not None:
            positions, triangles, colors = mesh
            self.rec.log(MAP, self._rr.Mesh3D(vertex_positions=positions, triangle_indices=triangles, vertex_colors=colors))

    def close(self) -> None:
        """Write what is buffered and close the file and the viewer connection. A viewer that could not be
        reached (closed, or none could start: no display) is a warning, not an error: the run and the file
        are kept."""
        try:
            self.rec.flush()
        except RuntimeError as exc:  # the SDK's gRPC sink gave up; the file sink has flushed all the same
            warnings.warn(f"Rerun viewer: {' '.join(str(exc).split())}", RuntimeWarning, stacklevel=2)
        self.rec.disconnect()

    def __enter__(self) -> RerunLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _pinhole(self, entity: str, camera: PinholeCamera) -> None:
        """Log ``camera`` as ``entity``'s pinhole when it differs from the one logged there last."""
        if self._cameras.get(entity) != camera:
            self.rec.log(entity, self._rr.Pinhole(image_from_camera=camera.K, resolution=[camera.width, camera.height],
                                                  camera_xyz=self._rr.ViewCoordinates.RDF))
            self._cameras[entity] = camera


def observed_mesh(grid: HeightMap) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The triangles of ``grid`` whose three vertices are observed, on those vertices only: positions (n, 3)
    float32 (x, y, height), triangles (m, 3) uint32 into them, colours (n, 3) uint8; None when there are none."""
    observed = grid.observed.ravel()
    triangles = grid.triangles()
    triangles = triangles[observed[triangles].all(axis=1)]
    if not len(triangles):
        return None
    index = np.cumsum(observed) - 1  # flat vertex id -> position among the observed vertices
    positions = np.column_stack([grid.vertex_xy().reshape(-1, 2)[observed], grid.heights.ravel()[observed]])
    colors = np.rint(np.clip(grid.colors.reshape(-1, 3)[observed], 0.0, 1.0) * 255).astype(np.uint8)
    return positions.astype(np.float32), index[triangles].astype(np.uint32), colors


def _millimetres(depth: np.ndarray) -> np.ndarray:
    """Depth in metres (NaN: none) as uint16 millimetres, 0 where none (Rerun's "no depth")."""
    valid = np.isfinite(depth) & (depth > 0)
    mm = np.where(valid, np.rint(np.where(valid, depth, 0.0) * _DEPTH_UNITS_PER_METRE), 0.0)
    return np.clip(mm, 0, np.iinfo(np.uint16).max).astype(np.uint16)
