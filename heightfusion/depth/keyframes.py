"""Keyframes and source frames for motion stereo: which earlier frames see the reference with useful parallax.

A frame helps the stereo of a reference frame when the match of a scene point moves far enough in it
to measure depth (parallax, from the baseline), not so far that the views stop looking alike and the
hypotheses step over several pixels, and when it sees most of what the reference sees (overlap). Both
are measured at a nominal scene depth on a sparse grid of reference pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..camera import PinholeCamera
from ..poses import invert_pose

# Reference pixels at which parallax and overlap are measured: a grid of this many columns and rows.
_SAMPLES = (16, 12)


@dataclass(frozen=True)
class KeyframeConfig:
    """How :class:`KeyframeWindow` keeps frames and picks sources.

    Attributes:
        window: keyframes kept (the oldest goes first). A turning camera comes back to views it left: on
            the real TUM fr1/rpy frames (every 5th held out, ``replay --depth mvs``), 24 keyframes and 3
            sources fused 137 of 144 frames into a map of held-out median |dh| 49 mm at coverage 0.23,
            against 124 frames, 59 mm and 0.22 with 10 and 4 (the former defaults; three runs each, at 94-100 %
            of their fused frames/s; ``benchmarks/bench_mono_real.py`` fuses both); 24 and 4 gave 44-46 mm and 0.25 at 10 % fewer frames/s (more sources cost more
            sweep), 24 and 2 52 mm at 12 % more. Played at its pace in the live app, where the frames that
            survive dropping are far apart, 24 keyframes fused 4.0-4.2 frames/s against 3.2-4.0.
        num_sources: most source frames given to the stereo per reference.
        min_parallax: a source must move the median match by at least this many pixels.
        max_parallax: ... and by at most this many.
        min_overlap: share of the reference's pixels (at the nominal depth) a source must see. A source
            gives depth only where it overlaps, but a turning camera leaves few sources with both parallax
            and much overlap: on real TUM fr1/rpy frames (recorded poses) 0.5 gave 88 of 180 frames an
            estimate, 0.3 gives 148 at the same median error (23 %), and the map fused from them a
            held-out median |dh| of 40 mm at coverage 0.17 against 95 mm at 0.07.
        keyframe_parallax: a frame becomes a keyframe when its median parallax against the latest
            keyframe reaches this many pixels, or its overlap with it drops below ``min_overlap``;
            a camera that stands still does not fill the window with copies of one view.
    """

    window: int = 24
    num_sources: int = 3
    min_parallax: float = 6.0
    max_parallax: float = 40.0
    min_overlap: float = 0.3
    keyframe_parallax: float = 3.0

    def __post_init__(self) -> None:
        for name in ("window", "num_sources"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"KeyframeConfig.{name} must be a positive integer, got {value!r}")
        if not 0 < self.min_parallax < self.max_parallax < math.inf:
            raise ValueError(
                f"KeyframeConfig needs 0 < min_parallax < max_parallax, got {self.min_parallax!r}, {self.max_parallax!r}"
            )
        if not 0 < self.min_overlap <= 1:
            raise ValueError(f"KeyframeConfig.min_overlap must be in (0, 1], got {self.min_overlap!r}")
        if not (math.isfinite(self.keyframe_parallax) and self.keyframe_parallax > 0):
            raise ValueError(f"KeyframeConfig.keyframe_parallax must be positive, got {self.keyframe_parallax!r}")


#: Why a frame got no stereo sources (the start of :meth:`KeyframeWindow.no_source_reason`'s answer).
TOO_LITTLE_PARALLAX = "too little parallax"
TOO_MUCH_PARALLAX = "too much parallax"


@dataclass(frozen=True)
class ViewChange:
    """How a source frame sees a reference frame's pixels at a nominal depth.

    Attributes:
        parallax: median displacement, pixels, between a point's match and the match of the point at
            infinity on the same ray (what depth moves; 0 for a pure rotation).
        overlap: share of the sampled reference pixels whose point lands inside the source image.
    """

    parallax: float
    overlap: float


def view_change(camera: PinholeCamera, ref_T_wc: np.ndarray, src_T_wc: np.ndarray, depth: float) -> ViewChange:
    """Parallax and overlap of the source at ``src_T_wc`` for the reference at ``ref_T_wc``, points at ``depth``."""
    if not (math.isfinite(depth) and depth > 0):
        raise ValueError(f"depth must be a positive number of metres, got {depth!r}")
    columns, rows = _SAMPLES
    u, v = np.meshgrid(np.linspace(0, camera.width - 1, columns), np.linspace(0, camera.height - 1, rows))
    points = camera.unproject(np.stack([u.ravel(), v.ravel()], axis=-1), depth)
    T_sr = invert_pose(src_T_wc) @ ref_T_wc
    rotated = points @ T_sr[:3, :3].T
    near = camera.project(rotated + T_sr[:3, 3])
    infinity = camera.project(rotated)
    inside = (
        (rotated[:, 2] + T_sr[2, 3] > 0)
        & (near[:, 0] >= 0) & (near[:, 0] <= camera.width - 1)
        & (near[:, 1] >= 0) & (near[:, 1] <= camera.height - 1)
    )
    overlap = float(inside.mean())
    if not inside.any():
        return ViewChange(parallax=0.0, overlap=0.0)
    moved = np.linalg.norm(near[inside] - infinity[inside], axis=-1)
    parallax = float(np.median(np.nan_to_num(moved, nan=0.0)))  # a point at infinity behind the source moves 0
    return ViewChange(parallax=parallax, overlap=overlap)


def select_sources(
    camera: PinholeCamera, ref_T_wc: np.ndarray, candidates: list[np.ndarray], depth: float, config: KeyframeConfig
) -> list[int]:
    """Indices into ``candidates`` of up to ``num_sources`` source frames for the reference, best first.

    Eligible: parallax within [min_parallax, max_parallax] and overlap >= min_overlap; best: parallax
    closest (in ratio) to the geometric middle of that range, then larger overlap. Empty when no
    candidate is eligible: the reference then gets no depth rather than bad depth.
    """
    target = math.sqrt(config.min_parallax * config.max_parallax)
    scored = []
    for index, T_wc in enumerate(candidates):
        change = view_change(camera, ref_T_wc, T_wc, depth)
        if config.min_parallax <= change.parallax <= config.max_parallax and change.overlap >= config.min_overlap:
            scored.append((abs(math.log(change.parallax / target)), -change.overlap, index))
    return [index for _, _, index in sorted(scored)[: config.num_sources]]


@dataclass
class Keyframe:
    """A frame kept for stereo: RGB image, pose, body velocity (for a rolling shutter; None: unknown) and the
    6x6 covariance of the pose's error (camera-frame twist; None: exact)."""

    image: np.ndarray
    T_wc: np.ndarray
    velocity: np.ndarray | None = None
    pose_covariance: np.ndarray | None = None


class KeyframeWindow:
    """The most recent keyframes of a sequence, and the choice of sources among them.

    Args:
        config: window size and selection thresholds.
    """

    def __init__(self, config: KeyframeConfig | None = None) -> None:
        self.config = config or KeyframeConfig()
        self.keyframes: list[Keyframe] = []

    def no_source_reason(self, camera: PinholeCamera, T_wc: np.ndarray, depth: float) -> tuple[str, str]:
        """(reason, what to change) when :meth:`sources_for` finds no source: :data:`TOO_LITTLE_PARALLAX`
        (no keyframe yet, or all too close to the reference) or :data:`TOO_MUCH_PARALLAX` (those far
        enough apart moved too far or overlap too little)."""
        cfg = self.config
        changes = [view_change(camera, T_wc, k.T_wc, depth) for k in self.keyframes]
        if any(c.parallax >= cfg.min_parallax for c in changes):
            return TOO_MUCH_PARALLAX, (f"the keyframes moved over {cfg.max_parallax:g} px or overlap under "
                                       f"{cfg.min_overlap:.0%}: use more frames (a smaller stride) or raise --max-parallax")
        return TOO_LITTLE_PARALLAX, (f"the keyframes moved under {cfg.min_parallax:g} px: move the camera sideways "
                                     "or lower --min-parallax")

    def sources_for(self, camera: PinholeCamera, T_wc: np.ndarray, depth: float) -> list[Keyframe]:
        """The keyframes to use as sources for a reference at ``T_wc`` (see :func:`select_sources`)."""
        chosen = select_sources(camera, T_wc, [k.T_wc for k in self.keyframes], depth, self.config)
        return [self.keyframes[i] for i in chosen]

    def offer(
        self,
        camera: PinholeCamera,
        T_wc: np.ndarray,
        image: np.ndarray,
        depth: float,
        velocity: np.ndarray | None = None,
        pose_covariance: np.ndarray | None = None,
    ) -> bool:
        """Keep the frame (moving at body ``velocity``, its pose erring with ``pose_covariance``) if it moved
        enough from the latest keyframe (or is the first); True if kept."""
        if self.keyframes:
            change = view_change(camera, self.keyframes[-1].T_wc, T_wc, depth)
            if change.parallax < self.config.keyframe_parallax and change.overlap >= self.config.min_overlap:
                return False
        self.keyframes.append(Keyframe(image, np.array(T_wc, dtype=np.float64), velocity, pose_covariance))
        del self.keyframes[: -self.config.window]
        return True
