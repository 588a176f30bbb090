"""Baselines: the height-mapping methods users would pick instead, on the same :class:`~heightfusion.HeightMap`.

Both take frames as ``fuse(camera, T_wc, depth, image=None, sigma=None)`` and leave their result in the
grid they were given, so that :func:`heightfusion.save_heightmap`, the PNG writers and
:func:`heightfusion.metrics.evaluate` work on it unchanged:

- :class:`KalmanElevationMap`: the robotics standard, a per-cell 1-D Kalman filter with a Mahalanobis
  gate and the higher-point rule (ANYbotics ``elevation_mapping``); numpy only; the grid is current
  after every frame; pass ``timestamp`` (seconds) when the frames have one, as its outlier rules
  depend on time.
- :class:`TSDFHeightMap`: Open3D TSDF fusion read out as a height map with
  :meth:`TSDFHeightMap.height_map`; needs the optional extra ``pip install -e ".[baselines]"``
  (:class:`BaselineUnavailable` otherwise).

    grid = hf.HeightMap(origin, 0.02, shape)
    kalman = KalmanElevationMap(grid)
    for frame in frames:
        kalman.fuse(frame.camera, frame.T_wc, frame.depth, frame.image, timestamp=frame.timestamp)
    hf.save_heightmap("kalman.npz", grid)

    tsdf = TSDFHeightMap(hf.HeightMap(origin, 0.02, shape))
    for frame in frames:
        tsdf.fuse(frame.camera, frame.T_wc, frame.depth, frame.image)
    hf.save_heightmap("tsdf.npz", tsdf.height_map())
"""

from .kalman import DEFAULT_FRAME_PERIOD, KalmanConfig, KalmanElevationMap, KalmanStats
from .tsdf import BaselineUnavailable, TSDFConfig, TSDFHeightMap, TSDFStats

__all__ = [
    "DEFAULT_FRAME_PERIOD",
    "BaselineUnavailable",
    "KalmanConfig",
    "KalmanElevationMap",
    "KalmanStats",
    "TSDFConfig",
    "TSDFHeightMap",
    "TSDFStats",
]
