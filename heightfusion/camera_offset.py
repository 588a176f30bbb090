"""Camera offset: where the camera sits on the body whose poses a trajectory gives (hand-eye calibration).

A motion-capture system, a robot's odometry or a marker board report the pose ``G`` of a rigid body (the
markers, the base, the board's frame); the camera is rigidly attached to it at an offset ``X``, so the
camera's pose is ``T_wc = G @ X``. A trajectory that claims to give the optical centre often misses it by
centimetres, and under rotation a wrong offset becomes a wrong camera translation: a camera turning by
``R`` about a centre ``o`` off its optical centre moves by ``(R - I) o``, which for the few millimetres a
frame of a turning hand-held camera moves is as large as the motion itself. Motion stereo measures depth
from exactly that translation.

The offset is found as in hand-eye calibration (``A X = X B``): pairs of frames whose relative motion the
images measure (``B``, camera frame, e.g. by dense RGB-D alignment: :func:`measured_motions`) and the
trajectory gives (``A``, body frame) are explained by one ``X``, fitted by robust least squares
(:func:`fit_camera_offset`). The rotation of ``X`` needs pairs that turn about different axes, its
translation pairs that turn at all (a camera that only translates shows no offset).

With depth images the motions are measured mostly by the depth's geometry, so the offset found is that of
the depth's viewpoint. On the TUM fr1/rpy Kinect frames it is about the 2.5 cm between the Kinect's colour and
infrared cameras: the held-out sensor map and RGB-D odometry gain from it, motion stereo on the colour images
does not (README, Camera offset). For such recordings :func:`depth_at_colour_camera` (``--depth-offset``) moves
each depth image into the colour camera instead, and the frame stays at the trajectory's pose.

The same pairs measure the time offset of the trajectory's clock (:func:`fit_time_offset`): each pose moved
along the trajectory by its velocity (:meth:`MotionPairs.given_at`) until the pairs' rotations agree best with
the images'. On the TUM fr1/rpy frames it is -10 ms, and monocular stereo's map errs half as much there
(README, Time offset).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from .camera import PinholeCamera
from .datasets.frame import Frame
from .poses import invert_pose, validate_pose
from .tracking.se3 import exp_se3, log_se3

#: Units of the fit's residuals: a millimetre of translation counts as much as 0.05 degrees of rotation.
_TRANSLATION_SCALE_M = 0.001
_ROTATION_SCALE_RAD = math.radians(0.05)
#: A weak prior on the offset (metres, radians): it pulls what the motions leave undetermined (the component
#: along the axis of a camera that always turns about one axis) toward zero, fully where the motions say
#: nothing of it; a component the motions determine to millimetres is pulled by a fraction of a percent.
_PRIOR_M, _PRIOR_RAD = 0.05, math.radians(5.0)
#: Huber's threshold, in robust spreads of the residuals: a pair the alignment got wrong must not pull the offset.
_HUBER = 2.0
#: Smallest robust spread of the fit's residuals, in their units (0.1 mm, 0.005 deg).
_MIN_SPREAD = 0.1
#: Reference points per level and their least grey-level gradient (0-1 per pixel) of a pair's alignment: the
#: pairs are aligned at up to 640x480, where the tracker's 3000 points (for 160x120) would leave most texture out.
_PAIR_POINTS, _PAIR_MIN_GRADIENT = 8000, 0.01
#: An offset component known worse than this (metres, one sigma) is reported as not determined.
UNDETERMINED_M = 0.01
#: Time offsets :func:`fit_time_offset` considers by default (seconds either way) and its scan's step.
MAX_TIME_OFFSET_S = 0.05
_TIME_STEP_S = 0.0005


@dataclass(frozen=True)
class CameraOffset:
    """The fitted offset and how well it explains the pairs.

    Attributes:
        T_bc: 4x4 pose of the camera in the body frame (``T_wc = G @ T_bc``).
        pairs: frame pairs the fit used.
        before: RMS disagreement of the pairs' measured and given motions with no offset: (millimetres,
            degrees).
        after: ... with ``T_bc``.
        spread: (millimetres, degrees) between the offsets fitted on alternate pairs (the even and the odd
            ones): how far the data pin the offset down.
        translation_sigma: (3,) one-sigma uncertainty of the offset's translation along the body's axes,
            metres (from the fit's Jacobian and the residuals' robust spread).
        undetermined: unit direction (body frame) along which the motions do not determine the translation
            (its sigma over :data:`UNDETERMINED_M`: the camera turned about that axis alone), where the fit's
            prior pulls it toward zero; None when every direction is determined.
    """

    T_bc: np.ndarray
    pairs: int
    before: tuple[float, float]
    after: tuple[float, float]
    spread: tuple[float, float]
    translation_sigma: np.ndarray
    undetermined: np.ndarray | None = None

    @property
    def pose_sigma(self) -> tuple[float, float]:
        """(metres, degrees) per axis by which each given pose errs, from ``after``: a pair's motion errs by two
        poses' independent errors (sqrt 2) over three axes (sqrt 3). The depth alignment's own error is in
        ``after`` too, so it is an upper bound (``replay --pose-sigma``)."""
        millimetres, degrees = self.after
        return millimetres / 1000 / math.sqrt(6), degrees / math.sqrt(6)

    def summary(self) -> str:
        t = 1000 * self.T_bc[:3, 3]
        sd = 1000 * self.translation_sigma
        angle = math.degrees(np.linalg.norm(log_se3(self.T_bc)[3:]))
        text = (f"camera offset {t[0]:+.1f} {t[1]:+.1f} {t[2]:+.1f} mm (sigma {sd[0]:.1f} {sd[1]:.1f} {sd[2]:.1f}), "
                f"turned {angle:.2f} deg, from {self.pairs} frame pairs: they disagree with the trajectory by "
                f"{self.before[0]:.2f} mm / {self.before[1]:.3f} deg RMS without it, {self.after[0]:.2f} mm / "
                f"{self.after[1]:.3f} deg with it (alternate pairs' fits differ by {self.spread[0]:.1f} mm / "
                f"{self.spread[1]:.2f} deg)")
        if self.undetermined is not None:
            d = self.undetermined
            sd = 1000 * float(np.sqrt(self.undetermined @ np.diag(self.translation_sigma**2) @ self.undetermined))
            text += (f"; not determined along ({d[0]:+.2f}, {d[1]:+.2f}, {d[2]:+.2f}) (sigma about {sd:.0f} mm): the "
                     "camera turned about that axis alone; measure the offset along it another way")
        return text


def _disagreement(given: np.ndarray, measured: np.ndarray, T_bc: np.ndarray) -> np.ndarray:
    """(N, 6) twists of ``inv(A X) X B`` (zero where ``X`` explains a pair), translation first."""
    predicted = invert_pose(T_bc) @ given @ T_bc  # the camera's motion the trajectory implies
    return np.stack([log_se3(invert_pose(p) @ m) for p, m in zip(predicted, measured)])


def _rms(twists: np.ndarray) -> tuple[float, float]:
    return (1000 * float(np.sqrt(np.mean(np.sum(twists[:, :3] ** 2, axis=1)))),
            math.degrees(float(np.sqrt(np.mean(np.sum(twists[:, 3:] ** 2, axis=1))))))


def _fit(given: np.ndarray, measured: np.ndarray, rotation: bool) -> tuple[np.ndarray, np.ndarray]:
    """(offset, covariance of its parameters: translation in metres, rotation vector in radians)."""
    def offset(x: np.ndarray) -> np.ndarray:
        return exp_se3(np.concatenate([x[:3], x[3:] if rotation else np.zeros(3)]))

    def data(x: np.ndarray) -> np.ndarray:
        twists = _disagreement(given, measured, offset(x))
        return np.concatenate([twists[:, :3].ravel() / _TRANSLATION_SCALE_M, twists[:, 3:].ravel() / _ROTATION_SCALE_RAD])

    prior = np.array([_PRIOR_M] * 3 + ([_PRIOR_RAD] * 3 if rotation else []))
    x, spread = np.zeros(len(prior)), 1.0
    # Twice: the second solve weighs the data at the first's robust spread, so the prior is worth what it says.
    for _ in range(2):
        solution = least_squares(lambda x: np.concatenate([data(x) / spread, x / prior]), x, loss="huber",
                                 f_scale=_HUBER, x_scale=0.01)
        x = solution.x
        residuals = solution.fun[:-len(prior)] * spread
        spread = max(1.4826 * float(np.median(np.abs(residuals))), _MIN_SPREAD)
    J = solution.jac
    return offset(x), np.linalg.inv(J.T @ J)


@dataclass(frozen=True)
class TimeOffset:
    """The fitted time offset of a trajectory's clock and how well it explains the pairs' rotations.

    Attributes:
        seconds: the trajectory's clock ahead of the images' (``pose_time_offset`` of
            :func:`heightfusion.datasets.open`): the image taken at t is at the trajectory's pose at t + seconds.
        before: RMS rotation disagreement (degrees) of the pairs' measured and given motions at 0.
        after: ... at ``seconds``.
        spread: seconds between the offsets fitted on alternate pairs (the even and the odd ones).
    """

    seconds: float
    before: float
    after: float
    spread: float

    def summary(self) -> str:
        return (f"time offset {1000 * self.seconds:+.1f} ms (the trajectory's clock ahead of the images'): the "
                f"pairs' rotations disagree by {self.before:.3f} deg RMS at 0, {self.after:.3f} deg at it "
                f"(alternate pairs' fits differ by {1000 * self.spread:.1f} ms)")


def fit_time_offset(pairs: MotionPairs, max_offset: float = MAX_TIME_OFFSET_S) -> TimeOffset:
    """The time offset, within +-``max_offset`` seconds, that best explains the pairs' measured rotations.

    A time offset turns the trajectory's relative rotation of a pair by about the offset times the change of
    angular velocity between its frames (under a steady turn both ends move alike), so a camera that turns
    back and forth (a hand-held one) shows it; the rotations alone are compared, which the translation of a
    camera offset does not change. The mean Cauchy cost ``log(1 + (a / s)^2)`` of the pairs' disagreements ``a``
    (``s``: 1.48 times their median) is scanned every 0.5 ms and refined by a parabola through the least and its
    neighbours; twice, the second time with ``s`` at the first offset found (a large offset itself spreads the
    pairs at 0). A pair the alignment got wrong, tens of degrees off, then weighs almost nothing: on a synthetic
    robot loop (``synth --frames 90 --time-offset-ms 20``, 38 % of its pairs over 3 deg off) Huber's cost let
    them pull the offset to 11.8 ms; Cauchy's finds 18.8.

    Raises:
        ValueError: fewer than 8 pairs, or ``max_offset`` not a positive number of seconds.
    """
    if len(pairs) < 8:
        raise ValueError(f"a time offset needs at least 8 frame pairs, got {len(pairs)}")
    if not (math.isfinite(max_offset) and max_offset > 0):
        raise ValueError(f"max_offset must be a positive number of seconds, got {max_offset!r}")
    offsets = np.arange(-max_offset, max_offset + _TIME_STEP_S / 2, _TIME_STEP_S)

    def angles(subset: np.ndarray, offset: float) -> np.ndarray:
        given = pairs.given_at(offset)[subset]
        relative = np.swapaxes(given[:, :3, :3], 1, 2) @ pairs.measured[subset, :3, :3]
        return np.degrees(np.arccos(np.clip((np.trace(relative, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)))

    def best(subset: np.ndarray) -> float:
        found = 0.0
        for _ in range(2):
            scale = max(1.4826 * float(np.median(angles(subset, found))), math.degrees(_MIN_SPREAD * _ROTATION_SCALE_RAD))
            costs = np.array([np.mean(np.log1p((angles(subset, t) / scale) ** 2)) for t in offsets])
            found = least_of_scan(offsets, costs)
        return found

    def rms(offset: float) -> float:
        return float(np.sqrt(np.mean(angles(every, offset) ** 2)))

    every = np.arange(len(pairs))
    seconds = best(every)
    return TimeOffset(seconds=seconds, before=rms(0.0), after=rms(seconds),
                      spread=abs(best(every[::2]) - best(every[1::2])))


def least_of_scan(offsets: np.ndarray, costs: np.ndarray) -> float:
    """The offset of least cost of a scan over evenly spaced ``offsets``: the parabola's vertex through the least
    scanned cost and its two neighbours (within one step of it; the least itself where the three do not curve up)."""
    k = int(np.clip(np.argmin(costs), 1, len(offsets) - 2))
    left, centre, right = costs[k - 1 : k + 2]
    curvature = left - 2 * centre + right
    step = 0.5 * (left - right) / curvature if curvature > 0 else 0.0
    return float(offsets[k] + np.clip(step, -1.0, 1.0) * (offsets[1] - offsets[0]))


def fit_camera_offset(given: Iterable[np.ndarray], measured: Iterable[np.ndarray], rotation: bool = False) -> CameraOffset:
    """The camera's pose in the body frame that best explains frame pairs' motions.

    Args:
        given: per pair, the 4x4 motion the trajectory gives, ``inv(G_i) @ G_j`` (body frame).
        measured: per pair, the 4x4 motion the images measure, ``inv(T_i) @ T_j`` (camera frame).
        rotation: fit the offset's rotation too; by default the translation alone, the trajectory's
            orientation trusted to be the camera's. On the real TUM fr1/rpy frames (2026-12-05, an earlier
            version of the fit) the rotation fitted (1.6 deg) changed the held-out sensor map little (6.00 against 6.15 mm; 8.04 without an offset) and
            ruined the monocular map (115 against 57 mm): image-measured rotations of frames a few apart
            carry the timing errors of the recording, and a wrong turn of the camera costs motion stereo
            pixels. Calibrate a rotation with a board where it matters.

    Raises:
        ValueError: fewer than 4 pairs (8 with ``rotation``), different numbers of given and measured
            motions, or a motion that is not rigid.
    """
    given = np.array([validate_pose(A, f"given motion {i}") for i, A in enumerate(given)]).reshape(-1, 4, 4)
    measured = np.array([validate_pose(B, f"measured motion {i}") for i, B in enumerate(measured)]).reshape(-1, 4, 4)
    if len(given) != len(measured):
        raise ValueError(f"{len(given)} given motions but {len(measured)} measured ones")
    least = 8 if rotation else 4
    if len(given) < least:
        raise ValueError(f"a camera offset needs at least {least} frame pairs, got {len(given)}")
    T_bc, covariance = _fit(given, measured, rotation)
    # Alternate pairs, so that each half sees the whole motion (a half of the recording may turn about one axis).
    first, second = _fit(given[::2], measured[::2], rotation)[0], _fit(given[1::2], measured[1::2], rotation)[0]
    difference = invert_pose(first) @ second
    values, vectors = np.linalg.eigh(covariance[:3, :3])
    least_known = vectors[:, -1] * np.sign(vectors[np.argmax(np.abs(vectors[:, -1])), -1])  # its largest part > 0
    undetermined = least_known if values[-1] > UNDETERMINED_M**2 else None
    return CameraOffset(
        T_bc=T_bc,
        pairs=len(given),
        before=_rms(_disagreement(given, measured, np.eye(4))),
        after=_rms(_disagreement(given, measured, T_bc)),
        spread=(1000 * float(np.linalg.norm(difference[:3, 3])), math.degrees(float(np.linalg.norm(log_se3(difference)[3:])))),
        translation_sigma=np.sqrt(np.clip(np.diag(covariance)[:3], 0.0, None)),
        undetermined=undetermined,
    )


@dataclass(frozen=True)
class MotionPairs:
    """Frame pairs' relative motions as a trajectory gives them and as the images measure them.

    Attributes:
        given: (N, 4, 4) per pair, ``inv(G_i) @ G_j`` of the trajectory's poses (body frame).
        measured: (N, 4, 4) per pair, the motion the images measure (camera frame).
        times: (N, 2) the two frames' timestamps, seconds.
        velocities: (N, 2, 6) the trajectory's body velocities (v, w) at the two frames (m/s, rad/s; central
            differences of the frames' poses, one-sided at the ends), with which :func:`fit_time_offset` moves
            each pose along the trajectory.
    """

    given: np.ndarray
    measured: np.ndarray
    times: np.ndarray
    velocities: np.ndarray

    def __len__(self) -> int:
        return len(self.given)

    def given_at(self, time_offset: float) -> np.ndarray:
        """(N, 4, 4) the trajectory's motions with both poses taken ``time_offset`` seconds later along it:
        ``exp(-dt xi_i) inv(G_i) G_j exp(dt xi_j)`` (a few milliseconds: the velocity's change is negligible)."""
        start = exp_se3(-time_offset * self.velocities[:, 0])
        end = exp_se3(time_offset * self.velocities[:, 1])
        return start @ self.given @ end


def measured_motions(frames: Iterable[Frame], gaps: Iterable[int] = (3, 6, 10), every: int = 2,
                     max_side: int = 480, progress: bool = False) -> MotionPairs:
    """Motions of frame pairs ``gaps`` frames apart (every ``every``-th first frame) as the trajectory gives
    them and as dense RGB-D alignment measures them (:func:`heightfusion.tracking.align`, photometric and
    geometric, the later frame to the earlier one, started at the trajectory's motion).

    Frames without an image, depth or a given pose are passed over; pairs whose alignment fails (too few
    inliers, an unbounded covariance, not converged) are left out. ``frames`` are read once and only the
    last ``max(gaps) + 1`` kept (and every frame's pose and timestamp), so a long recording needs little
    memory. ``max_side``: the finest level aligned has at most this many pixels along its shorter side.
    ``progress``: a bar of frames read.
    """
    from tqdm import tqdm

    from .tracking import align, make_reference, tracked_pyramid
    from .tracking.views import level_range

    gaps = sorted(set(int(g) for g in gaps))
    if not gaps or gaps[0] < 1 or every < 1:
        raise ValueError(f"gaps and every must be positive frame counts, got {gaps}, {every}")
    recent: deque = deque(maxlen=gaps[-1] + 1)  # (index, pose, reference or None) of the latest usable frames
    given, measured, indices = [], [], []
    stamps, poses = [], []  # every usable frame's, for the velocities
    levels = None
    usable = (f for f in frames if f.image is not None and f.depth is not None and f.T_wc is not None)
    for index, frame in enumerate(tqdm(usable, unit="frame", desc="camera offset: aligning pairs", disable=not progress)):
        stamps.append(frame.timestamp)
        poses.append(frame.T_wc)
        if levels is None:
            levels = level_range(frame.camera, max_side, 30)
        pyramid = tracked_pyramid(frame.camera, frame.image, frame.depth, *levels)
        reference = (make_reference("pair", pyramid[0].camera, np.eye(4), pyramid[0].gray, pyramid[0].depth, 0,
                                    len(pyramid) - 1, _PAIR_POINTS, _PAIR_MIN_GRADIENT)
                     if index % every == 0 else None)
        recent.append((index, frame.T_wc, reference))
        for earlier_index, earlier_T_wc, earlier_reference in recent:
            if earlier_reference is None or index - earlier_index not in gaps:
                continue
            A = invert_pose(earlier_T_wc) @ frame.T_wc
            result = align(pyramid, [earlier_reference], A)
            if result.converged and result.inliers >= 0.6 and result.data_covariance is not None:
                given.append(A)
                measured.append(result.T_wc)
                indices.append((earlier_index, index))
    velocities = body_velocities(np.array(stamps), poses)
    indices = np.array(indices, dtype=np.int64).reshape(-1, 2)
    return MotionPairs(given=np.array(given).reshape(-1, 4, 4), measured=np.array(measured).reshape(-1, 4, 4),
                       times=np.array(stamps, dtype=np.float64)[indices] if len(stamps) else np.zeros((0, 2)),
                       velocities=velocities[indices] if len(stamps) else np.zeros((0, 2, 6)))


def body_velocities(stamps: np.ndarray, poses: list[np.ndarray]) -> np.ndarray:
    """(N, 6) body velocities of poses at ``stamps``: central differences, one-sided at the ends (zero for one pose)."""
    count = len(poses)
    velocities = np.zeros((count, 6))
    for i in range(count):
        before, after = max(i - 1, 0), min(i + 1, count - 1)
        if after > before and stamps[after] > stamps[before]:
            velocities[i] = log_se3(invert_pose(poses[before]) @ poses[after]) / (stamps[after] - stamps[before])
    return velocities


def depth_at_colour_camera(camera: PinholeCamera, depth: np.ndarray, T_cd: np.ndarray) -> np.ndarray:
    """(H, W) float32 depth (metres, NaN where unknown) of the colour camera, from a depth image on its pixel grid
    whose geometry is seen from ``T_cd`` (the depth's viewpoint, 4x4, in the colour camera's frame).

    A depth image registered to the colour image (a Kinect's) can still measure its points from beside the colour
    camera: pixel p with value d is the point ``T_cd (K^-1 p d)``. Each such point is projected into the colour
    camera and the nearest one kept where several land on a pixel (what the colour camera sees in front);
    pixels no point lands on are NaN.
    """
    T_cd = validate_pose(T_cd, "T_cd")
    height, width = depth.shape
    known = np.isfinite(depth) & (depth > 0)
    v, u = np.nonzero(known)
    d = depth[known].astype(np.float64)
    x, y = (u - camera.cx) / camera.fx * d, (v - camera.cy) / camera.fy * d
    (r00, r01, r02), (r10, r11, r12), (r20, r21, r22) = T_cd[:3, :3]
    t = T_cd[:3, 3]
    # Written out: (N, 3) products would cost a third more of a 640x480 frame's 12 ms.
    px, py, z = r00 * x + r01 * y + r02 * d + t[0], r10 * x + r11 * y + r12 * d + t[1], r20 * x + r21 * y + r22 * d + t[2]
    front = z > 1e-6
    column = np.rint(camera.fx * px[front] / z[front] + camera.cx).astype(np.int64)
    row = np.rint(camera.fy * py[front] / z[front] + camera.cy).astype(np.int64)
    inside = (column >= 0) & (column < width) & (row >= 0) & (row < height)
    nearest = np.full(height * width, np.inf)
    np.minimum.at(nearest, row[inside] * width + column[inside], z[front][inside])
    nearest = nearest.reshape(height, width)
    return np.where(np.isfinite(nearest), nearest, np.nan).astype(np.float32)

