"""Camera trajectories over the synthetic scenes: poses ``T_wc`` (4x4, camera-to-world, OpenCV camera)."""

from __future__ import annotations

import math

import numpy as np

from ..poses import look_at
from .scenes import Scene


def _camera_pose(position: np.ndarray, yaw: float, pitch_down: float) -> np.ndarray:
    """``T_wc`` of a camera at ``position`` looking along heading ``yaw`` (rad from +x), ``pitch_down`` below horizontal."""
    forward = np.array([math.cos(yaw) * math.cos(pitch_down), math.sin(yaw) * math.cos(pitch_down), -math.sin(pitch_down)])
    return look_at(position, position + forward)


def robot_loop(
    frames: int,
    radius: float = 0.9,
    wobble: float = 0.3,
    lobes: int = 4,
    camera_height: float = 0.45,
    pitch_deg: float = 30.0,
) -> np.ndarray:
    """(frames, 4, 4) poses of a ground robot slaloming once round the floor's centre, anticlockwise.

    The path is r(theta) = radius + wobble * sin(lobes * theta): a loop that swings in and out, so the
    forward-looking camera (heading along the path, pitched down ``pitch_deg``) looks across the
    middle of the floor on the inward swings and at the corners on the outward ones.
    """
    poses = []
    for theta in 2 * math.pi * np.arange(frames) / frames:
        r = radius + wobble * math.sin(lobes * theta)
        dr = wobble * lobes * math.cos(lobes * theta)
        c, s = math.cos(theta), math.sin(theta)
        heading = math.atan2(dr * s + r * c, dr * c - r * s)  # direction of d(r cos, r sin)/d theta
        poses.append(_camera_pose(np.array([r * c, r * s, camera_height]), heading, math.radians(pitch_deg)))
    return np.stack(poses)


def _lawnmower_point(dist: float, legs: int, half_length: float, spacing: float) -> tuple[np.ndarray, float]:
    """Position (x, y) and heading (rad) at path length ``dist`` along a lawnmower with semicircular turns.

    Leg k runs along +x (even k) or -x (odd k) at y = (k - (legs - 1) / 2) * spacing from
    x = -+half_length to +-half_length; turns of radius spacing / 2 join the legs outside
    [-half_length, half_length], so the heading is continuous.
    """
    r = spacing / 2
    leg_len, turn_len = 2 * half_length, math.pi * r
    for k in range(legs):
        direction = 1 if k % 2 == 0 else -1
        y_leg = (k - (legs - 1) / 2) * spacing
        if dist <= leg_len or k == legs - 1:
            x = direction * (min(dist, leg_len) - half_length)
            return np.array([x, y_leg]), 0.0 if direction > 0 else math.pi
        dist -= leg_len
        if dist <= turn_len:
            phi = dist / r  # angle turned so far: left turn after a +x leg, right turn after a -x leg
            x = direction * (half_length + r * math.sin(phi))
            return np.array([x, y_leg + r - r * math.cos(phi)]), phi if direction > 0 else math.pi - phi
        dist -= turn_len
    raise AssertionError("unreachable: the last leg returns")


def lawnmower_length(legs: int, half_length: float, spacing: float) -> float:
    """Total path length of :func:`_lawnmower_point`'s lawnmower, metres."""
    return legs * 2 * half_length + (legs - 1) * math.pi * spacing / 2


def drone_lawnmower(
    frames: int,
    altitude: float = 2.0,
    tilt_deg: float = 30.0,
    legs: int = 3,
    half_length: float = 2.6,
    spacing: float = 2.2,
) -> np.ndarray:
    """(frames, 4, 4) poses of a drone flying a lawnmower at ``altitude`` above z = 0.

    The camera looks down, tilted ``tilt_deg`` forward from the vertical (along the flight direction).
    """
    poses = []
    total = lawnmower_length(legs, half_length, spacing)
    for s in np.linspace(0.0, 1.0, frames):
        xy, heading = _lawnmower_point(float(s) * total, legs, half_length, spacing)
        position = np.array([xy[0], xy[1], altitude])
        poses.append(_camera_pose(position, heading, math.radians(90.0 - tilt_deg)))
    return np.stack(poses)


def trajectory_for(scene: Scene, frames: int) -> np.ndarray:
    """The default trajectory for a scene: a robot loop on floors, a drone lawnmower over terrain."""
    if scene.platform == "drone":
        return drone_lawnmower(frames)
    return robot_loop(frames)
