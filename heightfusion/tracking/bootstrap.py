"""Two-view start of monocular odometry on frames without poses: a plain video, a webcam without the board.

Monocular odometry tracks frames against the map that stereo builds, and stereo needs posed frames to
begin with. With a starting pose alone, :class:`MonocularBootstrap` poses the first ones:

1. corners of the first frame (Shi-Tomasi) are followed from frame to frame (pyramidal Lucas-Kanade, kept
   where tracking back lands within ``max_fb_px`` of where the track came from) while the frames after the
   first are held back;
2. once they have moved ``min_flow_px`` (median), the relative pose is the essential matrix's (five-point
   RANSAC) or the homography's (a floor is a plane, on which the essential matrix goes astray), polished on
   all the corners, and the corners are triangulated; a view that turned more than it moved (median ray
   angle below ``min_ray_angle_deg``) pins no depth, and it waits for more motion;
3. the scale, which images alone cannot give, comes from the starting pose's height: the ground is the
   plane z = 0 of the map, and the lowest level that holds many of the triangulated points
   (:func:`ground_level`) lies on it (so a start pose 0.45 m above the floor says that the floor the camera
   sees is 0.45 m below it);
4. the held frames, and those after while enough of the points stay in view, are posed by PnP against
   the points (RANSAC, then refined). Their poses are what :class:`heightfusion.tracking.Tracker`'s
   odometry uses until the map covers the view; the map then takes over.

The first frame is handed on at once with the starting pose; the others as they get a pose, or without
one where it failed (the pipeline skips and counts those). :class:`Bootstrapped` wraps a sequence so.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from ..datasets.frame import Frame
from ..poses import invert_pose, validate_pose


@dataclass(frozen=True)
class BootstrapConfig:
    """Settings of :class:`MonocularBootstrap` (pixels are the frames' own).

    Attributes:
        max_corners: corners taken from the first frame.
        min_tracks: corners (and triangulated points) a pose needs.
        max_fb_px: largest forward-backward tracking error a corner keeps its track with, pixels.
        min_flow_px: median distance the corners must have moved before the two-view pose is tried,
            pixels (the stereo that follows wants 6-40 px of parallax).
        min_ray_angle_deg: median angle between the two views' rays to a triangulated point, degrees: less
            and the depth is too poorly pinned (the camera mostly turned), and it waits.
        ransac_px: RANSAC threshold of the essential matrix and PnP, pixels.
        ground_share, ground_tolerance: the ground is the lowest level holding at least ``ground_share`` of the
            triangulated points within ``ground_tolerance`` of its distance below the camera (:func:`ground_level`:
            objects on it and walls lie higher; the points' median, used before, put the synthetic steps
            scene's scale 4.8 % off, this 2.7 %; on the floor both 1.5 %).
        max_held: frames held back waiting for motion; beyond that it gives up (the held frames go on
            without poses).
    """

    max_corners: int = 1000
    min_tracks: int = 50
    max_fb_px: float = 1.0
    min_flow_px: float = 20.0
    min_ray_angle_deg: float = 5.0
    ransac_px: float = 1.0
    ground_share: float = 0.3
    ground_tolerance: float = 0.03
    max_held: int = 90


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)


def _pose(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, np.ravel(t)
    return T


def _triangulate(K: np.ndarray, R: np.ndarray, t: np.ndarray, first: np.ndarray, now: np.ndarray,
                 max_px: float) -> tuple[np.ndarray, np.ndarray]:
    """(points (N, 3) in the first camera's frame, good (N,) bool) for the second camera at x2 = R x1 + t:
    good where a point lies in front of both cameras and reprojects within ``max_px`` in both."""
    P1 = K @ np.eye(3, 4)
    P2 = K @ np.c_[R, t]
    X = cv2.triangulatePoints(P1, P2, first.T, now.T)
    X = (X[:3] / X[3]).T
    X2 = X @ R.T + t
    good = (X[:, 2] > 0) & (X2[:, 2] > 0)
    for points, P in ((first, P1), (now, P2)):
        projected = np.c_[X, np.ones(len(X))] @ P.T
        with np.errstate(divide="ignore", invalid="ignore"):
            good &= np.linalg.norm(projected[:, :2] / projected[:, 2:] - points, axis=1) <= max_px
    return X, good


def _refine_two_view(K: np.ndarray, R: np.ndarray, t: np.ndarray, X: np.ndarray, first: np.ndarray, now: np.ndarray,
                     huber_px: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(R, t, X) refined by least squares of the reprojection in the second view (Huber, ``huber_px``): the
    turn, the translation's direction (|t| = 1) and each point's inverse depth along its first-view ray. On the
    synthetic floor the bootstrap's poses erred by a median 5.1 mm / 0.47 deg with it, 6.4 mm / 0.55 deg
    without; at a few degrees of ray angle the cost is flat along a trade of the turn against the translation's
    direction, which no polishing (nor an adjustment over the frames in between, tried) removes."""
    from scipy.optimize import least_squares
    from scipy.sparse import lil_matrix

    rays = X / X[:, 2:]
    _, _, vt = np.linalg.svd(t.reshape(1, 3))
    across = vt[1:]  # two directions orthogonal to t
    f = np.array([K[0, 0], K[1, 1]])
    c = K[:2, 2]

    def unpack(x):
        rotation = cv2.Rodrigues(x[:3])[0] @ R
        direction = t + x[3:5] @ across
        return rotation, direction / np.linalg.norm(direction), x[5:]

    def residuals(x):
        rotation, direction, inverse_depth = unpack(x)
        seen = rays @ rotation.T + inverse_depth[:, None] * direction
        return ((seen[:, :2] / seen[:, 2:]) * f + c - now).ravel()

    n = len(X)
    sparsity = lil_matrix((2 * n, 5 + n), dtype=int)
    sparsity[:, :5] = 1
    for axis in (0, 1):
        sparsity[np.arange(n) * 2 + axis, 5 + np.arange(n)] = 1
    x0 = np.r_[np.zeros(5), 1.0 / X[:, 2]]
    fit = least_squares(residuals, x0, jac_sparsity=sparsity, loss="huber", f_scale=huber_px, x_scale="jac",
                        max_nfev=50)
    rotation, direction, inverse_depth = unpack(fit.x)
    return rotation, direction, rays / inverse_depth[:, None]


def ground_level(heights: np.ndarray, share: float = 0.3, tolerance: float = 0.03) -> float | None:
    """The ground's height among points' ``heights`` relative to the camera (any unit, up positive): the
    lowest level below the camera within which (from h to h (1 - ``tolerance``)) at least ``share`` of the
    points lie, as their median; where no level holds that many (hills), the median of all, if it is
    below the camera; else None. Objects on the floor and walls rise above the level; a point
    triangulated too deep is too rare to make one.

    Example:
        >>> floor, walls = np.full(40, -1.0), np.linspace(-0.9, 0.5, 60)
        >>> heights = np.r_[floor, walls]
        >>> ground_level(heights), round(float(np.median(heights)), 2)  # the median lies on the walls
        (-1.0, -0.67)
    """
    heights = np.asarray(heights, dtype=np.float64)
    below = np.sort(heights[heights < 0])
    ends = np.searchsorted(below, below * (1 - tolerance), side="right")
    enough = np.flatnonzero(ends - np.arange(len(below)) >= share * len(heights))
    if len(enough):  # the first window that holds enough starts low in the level: centre it on the level
        level = float(np.median(below[enough[0]:ends[enough[0]]]))
        return float(np.median(heights[np.abs(heights - level) <= tolerance * -level]))
    middle = float(np.median(heights)) if len(heights) else 0.0
    return middle if middle < 0 else None


def checked_start_pose(start_pose: np.ndarray) -> np.ndarray:
    """``start_pose`` as a float64 4x4 camera-to-world pose with the camera above the ground (z > 0); else a
    ValueError saying so."""
    T = validate_pose(np.asarray(start_pose, dtype=np.float64), "start_pose")
    if not T[2, 3] > 0:
        raise ValueError("start_pose must put the camera above the ground (z > 0): its height fixes the monocular "
                         f"scale, got z = {T[2, 3]:g} m")
    return T


class MonocularBootstrap:
    """Poses for the first frames of monocular odometry from a starting pose alone (module docstring).

    Feed frames in order to :meth:`push`; each call returns the frames to hand on (in order), each with its
    pose or with ``T_wc=None``. :meth:`finish` hands on the frames still held at the end. ``state`` is
    "waiting" (for motion), "posing" (PnP against the points) or "done"; ``message`` says how it started
    or why it gave up.

    Example:
        >>> import heightfusion as hf
        >>> from heightfusion.synthetic.sequence import generate
        >>> start = hf.look_at((0.0, -0.6, 0.7), (0.0, 0.2, 0.0))  # 0.7 m over the floor
        >>> first = next(iter(generate("floor", poses=start[None])))
        >>> boot = MonocularBootstrap(start)
        >>> handed_on = boot.push(first)  # the first frame goes on at once, at the start pose
        >>> len(handed_on), bool((handed_on[0].T_wc == start).all()), boot.state
        (1, True, 'waiting')
        >>> boot.push(first)  # no motion yet: held back
        []
    """

    def __init__(self, start_pose: np.ndarray, config: BootstrapConfig | None = None) -> None:
        self.start_pose = checked_start_pose(start_pose)
        self.config = config or BootstrapConfig()
        self.state = "waiting"
        self.message: str | None = None
        self._held: list[tuple[Frame, np.ndarray | None]] = []  # frames after the first, with their corners' positions
        self._first: np.ndarray | None = None  # (N, 2) corners of the first frame
        self._positions: np.ndarray | None = None  # (N, 2) where they are now, NaN where lost
        self._previous_gray: np.ndarray | None = None
        self._points: np.ndarray | None = None  # (N, 3) world points, NaN where not triangulated
        self._last_pose: np.ndarray | None = None
        self._ray_angle: float | None = None  # of the latest two-view try, degrees

    @property
    def summary(self) -> str:
        """How it started or why it gave up; else that it is still waiting for the camera to move."""
        return self.message or f"monocular bootstrap: still waiting for motion ({len(self._held)} frames held)"

    def push(self, frame: Frame) -> list[Frame]:
        """The frames to hand on after ``frame`` (with their poses where known)."""
        if self.state == "done":
            return [frame]
        if frame.image is None:  # nothing to follow the corners in: handed on as it is
            return [frame] if self.state != "waiting" or self._first is None else self._hold(frame, None)
        gray = _gray(frame.image)
        if self._first is None:
            return [self._start(frame, gray)]
        self._follow(gray)
        if self.state == "waiting":
            return self._wait(frame)
        pose = self._pnp(frame, self._positions)
        if pose is None:
            self.state = "done"  # the points left the view: the map takes over from here
        else:
            self._last_pose = pose
        return [dataclasses.replace(frame, T_wc=pose)]

    def finish(self) -> list[Frame]:
        """The frames still held (without poses): the sequence ended before the camera moved enough."""
        if self.state != "waiting" or self._first is None:
            return []
        held = len(self._held)
        return self._give_up(f"the sequence ended {held} frame{'s' if held != 1 else ''} after the first while "
                             f"{self._why_waiting()}")

    def _start(self, frame: Frame, gray: np.ndarray) -> Frame:
        cfg = self.config
        corners = cv2.goodFeaturesToTrack(gray, cfg.max_corners, 0.01, max(4.0, gray.shape[1] / 80))
        if corners is None or len(corners) < cfg.min_tracks:
            self._give_up(f"the first frame has too little texture ({0 if corners is None else len(corners)} "
                          f"corners, {cfg.min_tracks} needed)")
        else:
            self._first = corners.reshape(-1, 2).astype(np.float32)
            self._positions = self._first.copy()
            self._previous_gray = gray
        return dataclasses.replace(frame, T_wc=self.start_pose.copy())

    def _follow(self, gray: np.ndarray) -> None:
        """Move the corners' positions to ``gray``; lost ones become NaN."""
        alive = np.isfinite(self._positions[:, 0])
        points = self._positions[alive].reshape(-1, 1, 2)
        if len(points):
            lk = {"winSize": (21, 21), "maxLevel": 3,
                  "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)}
            ahead, found, _ = cv2.calcOpticalFlowPyrLK(self._previous_gray, gray, points, None, **lk)
            back, found_back, _ = cv2.calcOpticalFlowPyrLK(gray, self._previous_gray, ahead, None, **lk)
            good = (found.ravel() == 1) & (found_back.ravel() == 1)
            good &= np.linalg.norm((back - points).reshape(-1, 2), axis=1) <= self.config.max_fb_px
            h, w = gray.shape
            inside = ahead.reshape(-1, 2)
            good &= (inside[:, 0] >= 0) & (inside[:, 0] <= w - 1) & (inside[:, 1] >= 0) & (inside[:, 1] <= h - 1)
            moved = np.full((len(points), 2), np.nan, dtype=np.float32)
            moved[good] = inside[good]
            self._positions[alive] = moved
        self._previous_gray = gray

    def _hold(self, frame: Frame, positions: np.ndarray | None) -> list[Frame]:
        self._held.append((frame, positions))
        if len(self._held) > self.config.max_held:
            return self._give_up(f"{self.config.max_held} frames after the first, {self._why_waiting()}")
        return []

    def _wait(self, frame: Frame) -> list[Frame]:
        cfg = self.config
        alive = np.isfinite(self._positions[:, 0])
        if alive.sum() < cfg.min_tracks:
            return self._give_up(f"lost the first frame's corners ({int(alive.sum())} left) while "
                                 f"{self._why_waiting()}") + [frame]
        flow = np.median(np.linalg.norm(self._positions[alive] - self._first[alive], axis=1))
        if flow < cfg.min_flow_px or not self._two_view(frame, alive):
            return self._hold(frame, self._positions.copy())
        held, self._held = self._held, []
        posed = [dataclasses.replace(f, T_wc=self._pnp(f, positions)) for f, positions in held]
        return posed + [dataclasses.replace(frame, T_wc=self._last_pose)]

    def _two_view(self, frame: Frame, alive: np.ndarray) -> bool:
        """Relative pose and points from the first frame to ``frame``; False to wait for more motion.

        Candidates: the essential matrix's pose and the homography's (a floor is a plane, for which the
        essential matrix has two solutions and may pick the wrong one). Of those that explain nearly as
        many corners as the best (in front of both cameras, reprojected within twice the RANSAC threshold), the
        one whose points lie flattest in the world (the normal of their best plane nearest the start pose's
        up) wins: a plane's two solutions explain the corners equally well.
        """
        cfg = self.config
        K = frame.camera.K
        first, now = self._first[alive].astype(np.float64), self._positions[alive].astype(np.float64)
        candidates = []
        E, _ = cv2.findEssentialMat(first, now, K, cv2.RANSAC, 0.999, cfg.ransac_px)
        if E is not None and E.shape == (3, 3):
            _, R, t, _ = cv2.recoverPose(E, first, now, K)
            candidates.append((R, t.ravel()))
        H, _ = cv2.findHomography(first, now, cv2.RANSAC, cfg.ransac_px)
        if H is not None:
            _, rotations, translations, _ = cv2.decomposeHomographyMat(H, K)
            candidates += [(R, t.ravel() / np.linalg.norm(t)) for R, t in zip(rotations, translations)
                           if np.linalg.norm(t) > 1e-9]
        up = self.start_pose[:3, :3].T[:, 2]  # world +z in the first camera's frame
        scored = []
        for R, t in candidates:
            X, good = _triangulate(K, R, t, first, now, 2 * cfg.ransac_px)
            if good.sum() >= cfg.min_tracks:
                centred = X[good] - X[good].mean(axis=0)
                normal = np.linalg.svd(centred, full_matrices=False)[2][-1]
                scored.append((int(good.sum()), abs(float(normal @ up)), R, t, X, good))
        if not scored:
            return False
        most = max(s[0] for s in scored)
        _, _, R, t, X, good = max((s for s in scored if s[0] >= 0.9 * most), key=lambda s: s[1])
        R, t, X = _refine_two_view(K, R, t, X[good], first[good], now[good], cfg.ransac_px)
        front = X[:, 2] > 0  # the polish may push a stray point behind the camera
        good[np.flatnonzero(good)[~front]] = False
        X = X[front]
        centre = -R.T @ t  # the second camera's centre in the first's frame
        cosine = np.einsum("ij,ij->i", X, X - centre) / (np.linalg.norm(X, axis=1) * np.linalg.norm(X - centre, axis=1))
        angle = math.degrees(float(np.median(np.arccos(np.clip(cosine, -1, 1)))))
        self._ray_angle = angle
        if angle < cfg.min_ray_angle_deg:
            return False
        z0 = self.start_pose[2, 3]
        below = ground_level(X @ up, cfg.ground_share, cfg.ground_tolerance)  # relative to the camera, baseline units
        if below is None:
            return False  # no level below the camera holds enough points: the start height says nothing of them
        scale = z0 / -below
        world = np.full((len(self._first), 3), np.nan)
        world[np.flatnonzero(alive)[good]] = (self.start_pose @ np.c_[scale * X, np.ones(len(X))].T).T[:, :3]
        self._points = world
        self._last_pose = self.start_pose @ invert_pose(_pose(R, scale * t))
        self.state = "posing"
        self.message = (f"monocular bootstrap: posed from frame {frame.index} ({len(self._held) + 1} frames after "
                        f"the first), {len(X)} points, median ray angle {angle:.1f} deg, baseline "
                        f"{scale * 1e3:.0f} mm (scale from the start pose's height, {z0:.3f} m)")
        return True

    def _pnp(self, frame: Frame, positions: np.ndarray | None) -> np.ndarray | None:
        """``frame``'s pose (camera to world) from the points seen at ``positions`` (RANSAC from the last pose,
        then refined on the inliers), or None with under ``min_tracks`` of them."""
        cfg = self.config
        if positions is None:
            return None
        usable = np.isfinite(positions[:, 0]) & np.isfinite(self._points[:, 0])
        if usable.sum() < cfg.min_tracks:
            return None
        world, pixels = self._points[usable], positions[usable].astype(np.float64)
        T_cw = invert_pose(self._last_pose)
        rvec, tvec = cv2.Rodrigues(T_cw[:3, :3])[0], T_cw[:3, 3].reshape(3, 1).copy()
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(world, pixels, frame.camera.K, None, rvec, tvec, True,
                                                     200, 2 * cfg.ransac_px, 0.999, flags=cv2.SOLVEPNP_ITERATIVE)
        if not ok or inliers is None or len(inliers) < cfg.min_tracks:
            return None
        inliers = inliers.ravel()
        rvec, tvec = cv2.solvePnPRefineLM(world[inliers], pixels[inliers], frame.camera.K, None, rvec, tvec)
        return invert_pose(_pose(cv2.Rodrigues(rvec)[0], tvec))

    def _why_waiting(self) -> str:
        cfg = self.config
        if self._ray_angle is None:
            return f"the corners had moved under {cfg.min_flow_px:g} px (median) or gave no pose"
        # The image moved, by turning: a camera turning in place gives no depth.
        return (f"the camera turned more than it moved (the views' rays met at {self._ray_angle:.1f} deg, median; "
                f"{cfg.min_ray_angle_deg:g} needed): move it sideways")

    def _give_up(self, why: str) -> list[Frame]:
        """Stop, saying ``why``; the frames held so far, to hand on without poses."""
        self.state = "done"
        self.message = f"monocular bootstrap gave up: {why}; frames without a pose are skipped"
        held, self._held = self._held, []
        return [frame for frame, _ in held]


class Bootstrapped:
    """A sequence whose frames get poses from :class:`MonocularBootstrap` where they have none.

    A sequence whose first frame has a pose is passed through unchanged (its trajectory gives the poses
    odometry starts from). Everything else is the wrapped sequence's; ``bootstrap`` is the run's
    :class:`MonocularBootstrap` (its ``message`` says how it went), None until a frame without a pose came.
    """

    def __init__(self, sequence, start_pose: np.ndarray, config: BootstrapConfig | None = None) -> None:
        self._sequence = sequence
        self._start_pose = checked_start_pose(start_pose)
        self._config = config
        self.bootstrap: MonocularBootstrap | None = None

    def __getattr__(self, name: str):
        return getattr(self._sequence, name)

    def __len__(self) -> int:
        return len(self._sequence)

    def __iter__(self) -> Iterator[Frame]:
        return self.iter_frames()

    def iter_frames(self, stale=None) -> Iterator[Frame]:
        """The wrapped sequence's ``iter_frames(stale)`` (its plain frames without ``stale``, or where it has no
        such method), posed."""
        reader = getattr(self._sequence, "iter_frames", None)
        frames = iter(self._sequence) if stale is None or reader is None else reader(stale)
        first = next(frames, None)
        if first is None:
            return
        if first.T_wc is not None:
            yield first
            yield from frames
            return
        self.bootstrap = MonocularBootstrap(self._start_pose, self._config)
        for frame in itertools.chain([first], frames):
            yield from self.bootstrap.push(frame)
        yield from self.bootstrap.finish()
