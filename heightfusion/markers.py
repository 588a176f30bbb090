"""Metric camera poses from a printed ChArUco board lying on the floor, and camera calibration with it.

World frame defined by the board (heights of the map are then metres above the floor):

- origin: the **bottom-left outer corner** of the chessboard as printed by :meth:`BoardSpec.image`
  (the caption runs along the bottom edge);
- X: along the bottom edge, to the right (the ``squares_x`` direction);
- Y: up the printed page (the ``squares_y`` direction);
- Z: out of the printed face, i.e. up from the floor when the board lies face up.

OpenCV's own board frame has its origin at the *top-left* corner of the generated image, x right,
y *down* the page and therefore z *into* the paper (down into the floor). The two are related by a
half turn about the x axis plus a shift by the board height H = squares_y * square_length:
``X = x, Y = H - y, Z = -z``. All object points handed to OpenCV here are already in the world frame
(:meth:`BoardSpec.corner_world_points`), so ``solvePnP`` returns world-to-camera directly and no
frame conversion happens anywhere else. The paper is taken as infinitely thin (Z = 0 on its face).

ChArUco corner ``k`` (OpenCV's id) is the inner chessboard corner in column ``k % (squares_x - 1)``
and row ``k // (squares_x - 1)`` counted from OpenCV's origin (top-left), one square in from the edge.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from .camera import PinholeCamera
from .poses import invert_pose, validate_pose

MIN_CORNERS = 6  # ChArUco corners a pose or calibration view needs (PnP is posed from 4; 6 tolerate a bad one)
MAX_RMS_PX = 2.0  # a pose whose corners reproject worse than this (pixels, RMS) is rejected as a wrong fit
MIN_CALIBRATION_VIEWS = 4
MARKER_RATIO = 0.75  # default marker_length / square_length: wide white rim around each marker for detection
INCH = 0.0254  # metres

_BLACK_BITS_BORDER = 1  # black border of each marker, in marker bits (OpenCV's default)


@dataclass(frozen=True)
class BoardSpec:
    """A ChArUco board: ``squares_x`` by ``squares_y`` chessboard squares, ArUco markers in the white ones.

    The default (7 x 5 squares of 35 mm, 245 x 175 mm) fits A4 and US Letter landscape with margins.

    Attributes:
        squares_x, squares_y: number of squares along the board's X and Y (world axes, module docstring).
        square_length: side of a chessboard square in metres (as printed: measure it).
        marker_length: side of an ArUco marker in metres, less than ``square_length``.
        dictionary: OpenCV predefined ArUco dictionary name, e.g. ``"DICT_5X5_100"`` (``"5x5_100"`` works too).
    """

    squares_x: int = 7
    squares_y: int = 5
    square_length: float = 0.035
    marker_length: float = 0.02625  # MARKER_RATIO * square_length
    dictionary: str = "DICT_5X5_100"

    def __post_init__(self) -> None:
        for name in ("squares_x", "squares_y"):
            value = getattr(self, name)
            if isinstance(value, bool) or not float(value).is_integer() or value < 3:
                raise ValueError(f"board {name} must be an integer >= 3, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("square_length", "marker_length"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"board {name} must be a positive length in metres, got {value!r}")
            object.__setattr__(self, name, value)
        if self.marker_length >= self.square_length:
            raise ValueError(
                f"board marker_length ({self.marker_length:g} m) must be less than square_length "
                f"({self.square_length:g} m)"
            )
        name = str(self.dictionary).strip().upper()
        name = name if name.startswith("DICT_") else "DICT_" + name
        if not isinstance(getattr(cv2.aruco, name, None), int):
            known = sorted(n for n in dir(cv2.aruco) if n.startswith("DICT_") and n == n.upper())
            raise ValueError(f"unknown ArUco dictionary {self.dictionary!r}; one of {', '.join(known)}")
        object.__setattr__(self, "dictionary", name)
        available = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, name)).bytesList.shape[0]
        if self.marker_count > available:
            raise ValueError(
                f"a {self.squares_x}x{self.squares_y} board needs {self.marker_count} markers but {name} has only "
                f"{available}; use a larger dictionary"
            )

    @property
    def size(self) -> tuple[float, float]:
        """(width along X, height along Y) of the chessboard in metres."""
        return self.squares_x * self.square_length, self.squares_y * self.square_length

    @property
    def marker_count(self) -> int:
        """Number of ArUco markers (one per white square)."""
        return self.squares_x * self.squares_y // 2

    @property
    def corner_count(self) -> int:
        """Number of ChArUco corners (inner chessboard corners)."""
        return (self.squares_x - 1) * (self.squares_y - 1)

    def make_board(self) -> cv2.aruco.CharucoBoard:
        """The OpenCV board object (OpenCV's own frame: origin top-left, y down the page, z into it)."""
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        return cv2.aruco.CharucoBoard(
            (self.squares_x, self.squares_y), self.square_length, self.marker_length, dictionary
        )

    def corner_world_points(self) -> np.ndarray:
        """(corner_count, 3) float64 world coordinates (metres, Z = 0) of the ChArUco corners, indexed by id."""
        k = np.arange(self.corner_count)
        x = (k % (self.squares_x - 1) + 1) * self.square_length  # OpenCV board x
        y = (k // (self.squares_x - 1) + 1) * self.square_length  # OpenCV board y, down the page
        return np.stack([x, self.size[1] - y, np.zeros_like(x)], axis=1)

    def image(self, dpi: float = 300.0, margin: float = 0.01, pixels_per_metre: float | None = None) -> np.ndarray:
        """A printable RGB uint8 picture of the board, true to scale when printed at ``dpi``.

        ``margin`` (metres) of white paper surrounds the board; a two-line caption in the bottom margin
        gives the square size (to check the print scale with a ruler) and the world axes (no caption
        when the margin is too thin for legible text). ``pixels_per_metre`` overrides ``dpi``.
        """
        ppm = float(pixels_per_metre) if pixels_per_metre is not None else float(dpi) / INCH
        if not (math.isfinite(ppm) and ppm > 0):
            raise ValueError(f"board resolution must be positive, got {ppm * INCH:g} dpi")
        if not (math.isfinite(margin) and margin >= 0):
            raise ValueError(f"board margin must be a length >= 0 in metres, got {margin!r}")
        board = self._board_pixels(ppm)
        m = round(margin * ppm)
        page = np.full((board.shape[0] + 2 * m, board.shape[1] + 2 * m), 255, np.uint8)
        page[m : m + board.shape[0], m : m + board.shape[1]] = board
        w_mm, h_mm = (1000 * s for s in self.size)
        lines = (
            f"ChArUco {self.squares_x}x{self.squares_y} {self.dictionary}: squares {1000 * self.square_length:.2f} mm, "
            f"markers {1000 * self.marker_length:.2f} mm, board {w_mm:.1f} x {h_mm:.1f} mm"
            + (f" (print at {ppm * INCH:.0f} dpi, actual size)" if pixels_per_metre is None else ""),
            (
                "heightfusion world frame: origin at this bottom-left board corner, X right, Y up the page, "
                "Z out of the paper"
            ),
        )
        _draw_caption(page, lines, top=m + board.shape[0], height=m, left=m)
        return cv2.cvtColor(page, cv2.COLOR_GRAY2RGB)

    def _board_pixels(self, ppm: float) -> np.ndarray:
        """The bare chessboard, grey uint8, ``ppm`` pixels per metre (rounded to whole pixels)."""
        width, height = (round(s * ppm) for s in self.size)
        bits = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary)).markerSize
        if self.marker_length * ppm < 2 * (bits + 2 * _BLACK_BITS_BORDER):  # 2 dots per bit: crisp enough to decode
            raise ValueError(
                f"{ppm * INCH:.0f} dpi is too coarse for {1000 * self.marker_length:.1f} mm markers "
                f"of {bits + 2 * _BLACK_BITS_BORDER} bits (2 dots per bit needed); raise the resolution"
            )
        return self.make_board().generateImage((width, height), marginSize=0, borderBits=_BLACK_BITS_BORDER)


def _draw_caption(page: np.ndarray, lines: tuple[str, ...], top: int, height: int, left: int) -> None:
    """Draw ``lines`` in the band of rows ``top .. top+height`` of ``page``, as large as fits."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    w1 = max(cv2.getTextSize(text, font, 1.0, 1)[0][0] for text in lines)
    h1 = cv2.getTextSize(lines[0], font, 1.0, 1)[0][1]
    line_h = height / (len(lines) + 1)  # lines of text with gaps: about half the band is ink
    scale = min(0.6 * line_h / h1, (page.shape[1] - 2 * left) / w1)
    if scale * h1 < 4:  # too small to read: a thumbnail, not a print
        return
    thickness = max(1, round(scale * h1 / 12))  # stroke about 1/12 of the letter height
    for i, text in enumerate(lines):
        baseline = round(top + (i + 0.5) * line_h + 0.6 * line_h)
        cv2.putText(page, text, (left, baseline), font, scale, 0, thickness, cv2.LINE_AA)


@dataclass(frozen=True)
class BoardDetection:
    """ChArUco corners found in one image.

    Attributes:
        ids: (N,) int32 corner ids (see the module docstring).
        image_points: (N, 2) float64 pixel coordinates (distorted image, pixel centres at integers).
        world_points: (N, 3) float64 world coordinates in metres (Z = 0).
        markers: number of ArUco markers of the board found.
        collinear: whether the corners lie on one line (no pose from them).
        image_size: (width, height) of the image in pixels.
    """

    ids: np.ndarray
    image_points: np.ndarray
    world_points: np.ndarray
    markers: int
    collinear: bool
    image_size: tuple[int, int]

    @property
    def corners(self) -> int:
        """Number of ChArUco corners found."""
        return len(self.ids)

    def problem(self, min_corners: int = MIN_CORNERS) -> str | None:
        """Why the corners cannot give a pose (a short phrase), or None when they can."""
        if self.markers == 0:
            return "no board markers seen"
        if self.corners < min_corners:
            return f"{self.corners} ChArUco corners seen, need >= {min_corners}"
        if self.collinear:
            return f"the {self.corners} ChArUco corners seen lie on one line"
        return None


class BoardDetector:
    """Finds the ChArUco corners of one board in RGB (or grey) uint8 images; reusable across frames."""

    def __init__(self, spec: BoardSpec) -> None:
        self.spec = spec
        self._board = spec.make_board()
        charuco = cv2.aruco.CharucoParameters()
        charuco.tryRefineMarkers = True  # look again for markers missed (blur, small) where the board layout puts them
        self._detector = cv2.aruco.CharucoDetector(self._board, charuco)
        self._world = spec.corner_world_points()

    def detect(self, image: np.ndarray) -> BoardDetection:
        """The corners found in ``image`` (RGB (H, W, 3) or grey (H, W) uint8); possibly none."""
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise ValueError(
                f"board detection needs an RGB (H, W, 3) or grey (H, W) uint8 image, got {image.dtype} {image.shape}"
            )
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        corners, ids, _, marker_ids = self._detector.detectBoard(grey)
        size = (grey.shape[1], grey.shape[0])
        markers = 0 if marker_ids is None else len(marker_ids)
        if ids is None or len(ids) == 0:
            empty = np.zeros((0,), np.int32)
            return BoardDetection(empty, np.zeros((0, 2)), np.zeros((0, 3)), markers, True, size)
        ids = ids.ravel().astype(np.int32)
        return BoardDetection(
            ids=ids,
            image_points=corners.reshape(-1, 2).astype(np.float64),
            world_points=self._world[ids],
            markers=markers,
            collinear=bool(self._board.checkCharucoCornersCollinear(ids.reshape(-1, 1))),
            image_size=size,
        )


@dataclass(frozen=True)
class MarkerPose:
    """A camera pose measured from the board.

    Attributes:
        T_wc: 4x4 float64 camera-to-world pose (world frame: module docstring).
        corners: number of ChArUco corners used.
        rms_px: RMS reprojection error of those corners in pixels.
        detection: the corners themselves (for drawing them).
    """

    T_wc: np.ndarray
    corners: int
    rms_px: float
    detection: BoardDetection


class MarkerPoseEstimator:
    """Camera poses from images of the board lying on the floor.

    ``estimate`` detects the ChArUco corners, solves the planar PnP problem with IPPE (both of its
    solutions are tried; the one with the camera above the floor and the lower error is kept), refines
    it with Levenberg-Marquardt and checks the reprojection error. Lens distortion is handled through
    ``camera.distortion``: pass images straight from the camera, not undistorted ones.

    After a call, ``reason`` says why it returned None (None after a success).
    """

    def __init__(
        self, spec: BoardSpec, camera: PinholeCamera, min_corners: int = MIN_CORNERS, max_rms_px: float = MAX_RMS_PX
    ) -> None:
        if min_corners < 4:
            raise ValueError(f"min_corners must be >= 4 (planar PnP needs 4 points), got {min_corners}")
        self.spec = spec
        self.camera = camera
        self.min_corners = int(min_corners)
        self.max_rms_px = float(max_rms_px)
        self.detector = BoardDetector(spec)
        self.reason: str | None = None
        self._K = camera.K
        self._dist = np.zeros(5) if camera.distortion is None else np.asarray(camera.distortion)

    def estimate(self, image: np.ndarray) -> MarkerPose | None:
        """The pose of the camera that took ``image`` (RGB uint8, the camera's size), or None (see ``reason``)."""
        if np.asarray(image).shape[:2] != self.camera.shape:
            raise ValueError(f"image of shape {np.shape(image)[:2]} does not match camera shape {self.camera.shape}")
        detection = self.detector.detect(image)
        self.reason = detection.problem(self.min_corners)
        if self.reason is not None:
            return None
        pose = self._solve(detection)
        if pose is not None and pose.rms_px > self.max_rms_px:
            self.reason = f"reprojection error {pose.rms_px:.2f} px > {self.max_rms_px:g} px"
            return None
        return pose

    def _solve(self, detection: BoardDetection) -> MarkerPose | None:
        obj, img = detection.world_points, detection.image_points
        try:
            ok, rvecs, tvecs, errors = cv2.solvePnPGeneric(obj, img, self._K, self._dist, flags=cv2.SOLVEPNP_IPPE)
        except cv2.error:  # degenerate point sets the collinearity check let through
            ok = False
        if not ok:
            self.reason = "the PnP solver found no pose"
            return None
        best = None
        for rvec, tvec, error in zip(rvecs, tvecs, np.ravel(errors)):
            T_wc = _pose_wc(rvec, tvec)
            if T_wc[2, 3] > 0 and np.isfinite(error) and (best is None or error < best[2]):
                best = (rvec, tvec, error)
        if best is None:
            self.reason = "no pose with the camera above the board"
            return None
        rvec, tvec = cv2.solvePnPRefineLM(obj, img, self._K, self._dist, best[0], best[1])
        T_wc = _pose_wc(rvec, tvec)
        if not (np.isfinite(T_wc).all() and T_wc[2, 3] > 0):
            self.reason = "pose refinement diverged"
            return None
        projected, _ = cv2.projectPoints(obj, rvec, tvec, self._K, self._dist)
        rms = float(np.sqrt(np.mean(np.sum((projected.reshape(-1, 2) - img) ** 2, axis=1))))
        return MarkerPose(T_wc, detection.corners, rms, detection)


def _pose_wc(rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """``T_wc`` from OpenCV's world-to-camera rotation vector and translation."""
    T_cw = np.eye(4)
    T_cw[:3, :3] = cv2.Rodrigues(np.asarray(rvec, np.float64))[0]
    T_cw[:3, 3] = np.ravel(tvec)
    return invert_pose(T_cw)


def calibrate(
    images: Iterable[np.ndarray], spec: BoardSpec, min_corners: int = MIN_CORNERS, fix_k3: bool = True
) -> tuple[PinholeCamera, float, list[int]]:
    """Intrinsics and distortion from several views of the board (RGB uint8 images, one size).

    Returns (camera, RMS reprojection error in pixels, indices of the images used). See
    :func:`calibrate_detections`.
    """
    detector = BoardDetector(spec)
    return calibrate_detections([detector.detect(image) for image in images], min_corners, fix_k3)


def calibrate_detections(
    detections: list[BoardDetection], min_corners: int = MIN_CORNERS, fix_k3: bool = True
) -> tuple[PinholeCamera, float, list[int]]:
    """Intrinsics and distortion (k1 k2 p1 p2 k3) with ``cv2.calibrateCamera`` from board detections.

    Views with at least ``min_corners`` non-collinear corners are used; at least
    ``MIN_CALIBRATION_VIEWS`` of them are needed (ValueError otherwise), better 10-20 with the board
    tilted differently in each, since views of a plane facing the camera leave the focal length open.
    ``fix_k3`` keeps the sixth-order radial term at zero, which few views cannot pin down.
    Returns (camera, RMS reprojection error in pixels, indices of the detections used).
    """
    sizes = {d.image_size for d in detections}
    if len(sizes) > 1:
        raise ValueError(f"calibration images differ in size: {', '.join(f'{w}x{h}' for w, h in sorted(sizes))}")
    used = [i for i, d in enumerate(detections) if d.problem(min_corners) is None]
    seen = sum(d.markers > 0 for d in detections)
    if seen == 0:
        raise ValueError(
            f"the board was not seen in any of the {len(detections)} views (check the board's dictionary and size)"
        )
    if len(used) < MIN_CALIBRATION_VIEWS:
        raise ValueError(
            f"{len(used)} of {len(detections)} views show the board with >= {min_corners} ChArUco corners "
            f"(board markers seen in {seen}); calibration needs at least {MIN_CALIBRATION_VIEWS}, better 10-20 "
            "with the board tilted differently in each"
        )
    width, height = sizes.pop()
    obj = [detections[i].world_points.astype(np.float32) for i in used]
    img = [detections[i].image_points.astype(np.float32) for i in used]
    flags = cv2.CALIB_FIX_K3 if fix_k3 else 0
    try:
        rms, K, dist, _, _ = cv2.calibrateCamera(obj, img, (width, height), None, None, flags=flags)
    except cv2.error as exc:
        raise ValueError(f"calibration failed ({exc.err}); take views with the board tilted differently") from None
    if not (np.isfinite(rms) and np.isfinite(K).all() and np.isfinite(dist).all() and K[0, 0] > 0 and K[1, 1] > 0):
        raise ValueError("calibration failed to converge; take views with the board tilted differently")
    camera = PinholeCamera(width, height, K[0, 0], K[1, 1], K[0, 2], K[1, 2], tuple(np.ravel(dist)[:5]))
    return camera, float(rms), used


def render_board_view(
    spec: BoardSpec,
    camera: PinholeCamera,
    T_wc: np.ndarray,
    paper_margin: float = 0.01,
    floor_rgb: tuple[int, int, int] = (110, 100, 90),
    supersample: int = 3,
) -> np.ndarray:
    """What ``camera`` at ``T_wc`` sees of the board lying face up on a plain floor (RGB uint8).

    For tests, benchmarks and trying the live demo without a printer. The board sits on white paper
    with ``paper_margin`` metres around it; lens distortion (``camera.distortion``) is applied, so the
    result is what the real lens would record. Each pixel averages ``supersample``^2 rays (anti-aliasing).
    Rays that miss the floor (above the horizon) get ``floor_rgb`` too.
    """
    T_wc = validate_pose(T_wc)
    if T_wc[2, 3] <= 0:
        raise ValueError(f"camera at height {T_wc[2, 3]:g} m is not above the board (world Z up)")
    s = int(supersample)
    ppm = 64 / spec.square_length  # 64 texture pixels per square: sharp at any sensible viewing distance
    m = round(paper_margin * ppm)
    texture = cv2.copyMakeBorder(spec._board_pixels(ppm), m, m, m, m, cv2.BORDER_CONSTANT, value=255)
    # Sample positions of the supersampled image, in pixels of the output image (centres at integers).
    u = (np.arange(camera.width * s) + 0.5) / s - 0.5
    v = (np.arange(camera.height * s) + 0.5) / s - 0.5
    if camera.distortion is None:
        x, y = ((u - camera.cx) / camera.fx)[None, :], ((v - camera.cy) / camera.fy)[:, None]
    else:
        x, y = _undistorted_grid(camera, s)
    # The ray c + t R (x, y, 1) meets Z = 0 at t = -c_z / (R d)_z; in homogeneous world XY that is the
    # linear map N d (N below), valid where (R d)_z < 0. S then takes world XY to texture pixels:
    # OpenCV board x = X, y = H - Y, shifted by the paper margin (pixel centres at integers).
    R, c = T_wc[:3, :3], T_wc[:3, 3]
    N = np.stack([c[0] * R[2] - c[2] * R[0], c[1] * R[2] - c[2] * R[1], R[2]])
    S = np.array([[ppm, 0.0, m - 0.5], [0.0, -ppm, spec.size[1] * ppm + m - 0.5], [0.0, 0.0, 1.0]])
    h = [M[0] * x + M[1] * y + M[2] for M in S @ N]
    with np.errstate(divide="ignore", invalid="ignore"):
        col = np.where(h[2] < 0, h[0] / h[2], -1e6).astype(np.float32)  # -1e6: off the texture (sky)
        row = np.where(h[2] < 0, h[1] / h[2], -1e6).astype(np.float32)
    # Off the paper the border value 0 enters the bilinear weights, so ``grey`` is premultiplied by the
    # paper's coverage and the floor fills the rest: clean anti-aliased paper edges.
    grey, coverage = (
        cv2.remap(t, col, row, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        for t in (texture.astype(np.float32), np.ones(texture.shape, np.float32))
    )
    rgb = grey[..., None] + np.float32(floor_rgb) * (1 - coverage[..., None])
    rgb = cv2.resize(rgb, (camera.width, camera.height), interpolation=cv2.INTER_AREA)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _undistorted_grid(camera: PinholeCamera, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Ideal normalised coordinates (x, y), each (H*s, W*s), of the supersampled pixel grid of a distorted image.

    Undistortion (iterative) runs once per output pixel, over a one-pixel wider grid, and is interpolated
    bilinearly to the sub-pixel samples: ``cv2.resize`` puts destination centres at (a + 0.5)/s - 0.5,
    exactly the sample positions; the distortion map is smooth, so the interpolation error is far below
    a thousandth of a pixel.
    """
    u = np.arange(-1, camera.width + 1, dtype=np.float64)
    v = np.arange(-1, camera.height + 1, dtype=np.float64)
    uv = np.stack(np.meshgrid(u, v), axis=-1).reshape(-1, 1, 2)
    converged = (cv2.TERM_CRITERIA_COUNT, 20, 0.0)  # the default stops after 5 steps, short for strong lenses
    xy = cv2.undistortPoints(uv, camera.K, np.asarray(camera.distortion), criteria=converged)
    xy = cv2.resize(xy.reshape(len(v), len(u), 2), (len(u) * s, len(v) * s), interpolation=cv2.INTER_LINEAR)
    xy = xy[s : s + camera.height * s, s : s + camera.width * s]
    return xy[..., 0], xy[..., 1]
