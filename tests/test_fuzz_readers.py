"""Fuzzing every dataset reader with hypothesis: truncated, garbled, huge, empty, non-UTF-8 and adversarial files.

The contract under test (issue 14): every input gives either a ``DatasetError`` (``ValueError`` for the
single-file readers ``load_camera_yaml``, ``read_tum_trajectory``'s line messages and ``load_heightmap``)
whose message names the file, or a sequence whose every frame is either yielded well-formed or skipped
and counted; never another exception type, never a hang. Each reader gets at least ``EXAMPLES``
generated inputs; every test prints how many it ran and how long that took (``pytest -s`` shows them).

Hypothesis draws the options and a seed per input, and :class:`Fuzz` builds the files from that seed.
Hypothesis spends about a tenth of a millisecond per drawn value: drawing every token of every line
costs ten times more than reading the tiny dataset, and 2,000 inputs per reader would take minutes. A
failing input is reported with its seed (which reproduces it) and the files it wrote (``note``).
Generated files are tiny (8 x 6 pixel images, a few lines per index file).
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import math
import os
import random
import struct
import tempfile
import time
import zipfile
import zlib
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import example as known_input
from hypothesis import strategies as st

from heightfusion import datasets, load_heightmap
from heightfusion.datasets import DatasetError, associate, read_tum_trajectory
from heightfusion.datasets.camera_yaml import MAX_IMAGE_SIDE, load_camera_yaml
from heightfusion.poses import validate_pose

EXAMPLES = 2000
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis folder in the checkout
    # CI (CI=true, as .ci/run sets) runs one fixed set of inputs, so that a rare input found by chance
    # cannot fail one merge and pass the next; every other run draws new ones, and an input that ever
    # failed stays as an explicit example (known_input below).
    derandomize=os.environ.get("CI", "").lower() in ("1", "true"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
SEED = st.integers(0, 2**64 - 1)
# Longest one generated input may take, seconds: far above the few milliseconds each takes, so that only
# a real blow-up (a loop over billions of frames, a YAML alias bomb) trips it.
EXAMPLE_SECONDS = 10.0
# A whole test that runs this long is hung in C code that no Python check can interrupt: dump the stacks
# and end the run rather than block CI.
HANG_SECONDS = 600

W, H = 8, 6
COUNTS: dict[str, int] = {}
# Where the generated files go: a memory file system where there is one. On a disk, creating and
# removing a folder can cost milliseconds, more than reading a whole generated dataset.
SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


@pytest.fixture(autouse=True)
def quiet_opencv_and_hang_guard() -> Iterator[None]:
    """OpenCV's log lines for every broken file silenced; a hard time limit per test."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()
    cv2.utils.logging.setLogLevel(level)


def run_fuzz(name: str, fuzz: Callable[[], None]) -> None:
    """Run a hypothesis fuzz function, print its input count and time, and check it ran enough."""
    COUNTS[name] = 0
    start = time.perf_counter()
    fuzz()
    print(f"\nfuzz {name}: {COUNTS[name]} inputs in {time.perf_counter() - start:.1f} s")
    assert COUNTS[name] >= EXAMPLES


@contextlib.contextmanager
def example(name: str, files: dict[str, bytes | None], folder: str = "seq") -> Iterator[Path]:
    """One generated input of reader ``name``: ``files`` written into a fresh folder ``folder``, counted,
    shown in the failure report, and checked to finish in reasonable time."""
    COUNTS[name] += 1
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hf-fuzz-", dir=SCRATCH) as tmp:
        root = Path(tmp) / folder
        root.mkdir()
        for relative, data in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if data is None:
                path.mkdir(exist_ok=True)
            else:
                path.write_bytes(data)
        try:
            yield root
        except BaseException:
            note(f"files: {files!r}")
            raise
    assert time.perf_counter() - start < EXAMPLE_SECONDS


# ----------------------------------------------------------------------------- checks


def check_error_names(exc: BaseException, path: Path) -> None:
    """The error names ``path`` or a file in it."""
    assert str(path) in str(exc), str(exc)


def check_dataset(path: Path, root: Path, **options) -> None:
    """Open and read the dataset at ``path`` (in the folder ``root``): a DatasetError naming a path in
    ``root``, or well-formed frames and counted skips."""
    try:
        seq = datasets.open(path, **options)
    except DatasetError as exc:
        check_error_names(exc, root)
        return
    skipped_on_opening = sum(seq.skipped.values())
    frames = list(seq)
    skipped_while_reading = sum(seq.skipped.values()) - skipped_on_opening
    assert len(frames) + skipped_while_reading == len(seq), (len(frames), dict(seq.skipped), len(seq))
    for frame in frames:
        assert math.isfinite(frame.timestamp)
        assert frame.image.dtype == np.uint8 and frame.image.shape == seq.camera.shape + (3,)
        if frame.depth is not None:
            assert frame.depth.dtype == np.float32 and frame.depth.shape == seq.camera.shape
            valid = np.isfinite(frame.depth)
            assert valid.any() and (frame.depth[valid] > 0).all()
        if frame.T_wc is not None:
            validate_pose(frame.T_wc)
    if seq.gt_heightmap is not None:
        check_heightmap(seq.gt_heightmap)


def check_heightmap(grid) -> None:
    """A loaded map is internally consistent: shapes, dtypes, finite values, a usable prior."""
    assert grid.heights.ndim == 2 and min(grid.heights.shape) >= 2
    assert grid.heights.dtype == np.float32 and grid.information.dtype == np.float32
    assert grid.colors.shape == grid.heights.shape + (3,) and grid.observed.dtype == bool
    assert grid.information.shape == grid.observed.shape == grid.heights.shape
    for array in (grid.heights, grid.information, grid.colors):
        assert np.isfinite(array).all()
    assert (grid.information >= 0).all()
    assert math.isfinite(grid.prior_height) and math.isfinite(grid.prior_information) and grid.prior_information > 0


# ----------------------------------------------------------------------------- what the files are made of


def _encode(image: np.ndarray, ext: str) -> bytes:
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes()


_RGB = np.arange(H * W * 3, dtype=np.uint8).reshape(H, W, 3)
_DEPTH = np.full((H, W), 5000, np.uint16)
_DEPTH[0, :3] = 0
VALID_IMAGES = [
    _encode(_RGB, ".png"),
    _encode(_RGB, ".jpg"),
    _encode(_DEPTH, ".png"),  # 16-bit depth
    _encode(np.zeros((H, W), np.uint16), ".png"),  # depth without a single valid pixel
    _encode(_RGB[..., 0], ".png"),  # 8-bit grey
    _encode(np.dstack([_RGB, _RGB[..., :1]]), ".png"),  # RGBA
    _encode(_RGB[:, :-1], ".png"),  # the wrong size
    _encode(np.zeros((1, 1, 3), np.uint8), ".bmp"),
]
# Signatures of the formats OpenCV decodes, so that garbage reaches each decoder and not only the sniffer.
MAGICS = [
    b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM", b"\x76\x2f\x31\x01", b"#?RADIANCE\n",
    b"PF\n", b"Pf\n", b"P5\n", b"P6\n", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"GIF89a", b"\x00\x00\x00\x0cjP  \r\n\x87\n",
]
IMAGE_SIDES = [0, 1, 6, 8, 2**15, 2**16, 2**20, 2**21, 2**31 - 1, 2**32 - 1]
ADVERSARIAL_NUMBERS = [
    "nan", "NaN", "-nan", "inf", "-Infinity", "1e999", "-1e999", "1.7976931348623157e308",
    "-1.7976931348623157e308", "5e-324", "2.2250738585072014e-308", "1e-300", "1e300", "0", "-0", "0.0", "1_0",
    "0x10", "\u0661\u0662", "\u00b2", "\u00bd", "1e", ".", "-", "+1", "1.5.5", "9" * 30, "9" * 400, "9" * 5000,
    "1" * 19, "1" * 20, "1" * 21, "",
]
# Characters for random text: digits of other scripts, separators, controls, a lone surrogate (not
# encodable: written as invalid UTF-8), letters.
CHARACTERS = "0123456789.,-+eE_ \t#xnaif\u0661\u00b2\u00bd\u2028\x00\x0b\x1c\ufeff\ufffd\ud800\u00e9/\\"
# Times near each other so that images, depth and poses associate; and the same ones in nanoseconds.
TIMES = [0.0, 0.01, 0.033333, 0.05, 0.066667, 0.1, 0.100001, 0.2, 1305031102.175304]
CLEAN_TIMES = TIMES[:4]  # all within MAX_INTERPOLATION_GAP: every pose interpolates
QUATERNIONS = ["0 0 0 1", "0 0 0 0", "0 0 0.7071 0.7071", "1e-300 0 0 0", "5e-324 0 0 0", "1e300 1e300 1e300 1e300",
               "1.7e308 1.7e308 1.7e308 1.7e308", "nan 0 0 1", "0 0 0 -1", "1 1 1 1"]
FILE_NAMES = ["rgb/0.png", "rgb/1.png", "depth/0.png", "depth/1.png", "missing.png", "rgb", "/dev/zero", "/dev/null",
              "../seq/rgb/0.png", "a\x00b.png", "x" * 300 + ".png", "rgb/\u00e9.png", "."]
# YAML values for the fields of camera.yaml and sensor.yaml: wrong types, huge, non-finite, alias tricks,
# brackets nested thousands deep.
YAML_VALUES = [
    "8", "6", "0", "-1", "1.5", "1.0e+400", ".inf", "-.inf", ".nan", "~", "''", "'8'", "true", "[8, 6]", "[1, 2, 3]",
    "{a: 1}", "2020-01-01", "!!binary aGk=", "1" + "0" * 400, "1" + "0" * 5000, "0x10", "1_000",
    "[0.1, -0.1, 0.0, 0.0]", "[.nan, 0, 0, 0]", "[1e400, 0, 0, 0]", "[[1, 2], [3, 4]]", "[]", "&r [*r]",
    "[" * 500 + "]" * 500, "[" * 5000, "{a: " * 5000, "- " * 2000 + "1", "!!python/object/apply:os.system ['true']",
    "100000000", "1000000000000", "65536", "[100000000, 6]", "[" + ", ".join(["1.0"] * 16) + "]",
    "[" + ", ".join(["1"] * 17) + "]",
]
# Nine levels of nine aliases: 9**9 elements if anything expands it.
ALIAS_BOMB = "".join(f"l{k}: &l{k} [{', '.join([f'*l{k - 1}' if k else '1'] * 9)}]\n" for k in range(9))
CAMERA_TEMPLATE = {"width": "8", "height": "6", "fx": "10.0", "fy": "10.0", "cx": "3.5", "cy": "2.5",
                   "depth_scale": "5000.0", "distortion": "[0.1, -0.1, 0.0, 0.0, 0.01]"}
CAMERA_YAML = "".join(f"{k}: {v}\n" for k, v in CAMERA_TEMPLATE.items() if k != "distortion").encode()
SENSOR_TEMPLATE = {
    "sensor_type": "camera",
    "T_BS": "{cols: 4, rows: 4, data: [1.0, 0.0, 0.0, 0.1, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0, 0, 0, 1]}",
    "resolution": f"[{W}, {H}]",
    "intrinsics": "[10.0, 10.0, 3.5, 2.5]",
    "distortion_model": "radial-tangential",
    "distortion_coefficients": "[0.01, -0.01, 0.0, 0.0]",
}


def _videos() -> dict[str, bytes]:
    """A 4-frame 8 x 6 video per container, encoded once."""
    videos = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fourcc, ext in (("MJPG", ".avi"), ("mp4v", ".mp4")):
            path = os.path.join(tmp, "clip" + ext)
            writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), 10.0, (W, H))
            for i in range(4):
                writer.write(np.full((H, W, 3), 40 * i, np.uint8))
            writer.release()
            videos[ext] = Path(path).read_bytes()
    return videos


VIDEOS = _videos()
# A playlist where a video belongs: FFmpeg would follow it to other files.
HLS_PLAYLIST = b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nmissing.ts\n#EXT-X-ENDLIST\n"


def _npy(array: np.ndarray) -> bytes:
    member = io.BytesIO()
    np.save(member, array, allow_pickle=True)
    return member.getvalue()


_HUGE_NPY = io.BytesIO()
np.lib.format.write_array_header_1_0(_HUGE_NPY, {"descr": "<f4", "fortran_order": False, "shape": (10**7, 10**7)})
# Ways to spoil one array of a height-map file: other dtypes (objects, strings, complex), shapes,
# non-finite values, a header claiming 10^14 elements, raw bytes.
SPOILERS: list[Callable[[np.ndarray], np.ndarray | bytes]] = [
    *(lambda a, t=t: a.astype(t) for t in (np.float16, np.float64, np.int64, np.uint8, bool, np.complex64)),
    *(lambda a, v=v: np.full(np.shape(a), v) for v in (np.nan, np.inf, -np.inf, -1.0, 1e38, 1e300, 0.0)),
    *(lambda a, s=s: np.zeros(s) for s in ((), (2,), (3,), (2, 2), (3, 4, 3), (1, 1))),
    lambda a: np.array([object()], dtype=object),  # pickled
    lambda a: np.array(["abc"] * max(1, np.size(a))),
    lambda a: np.zeros(2, dtype=[("a", "f4"), ("b", "i4")]),
    lambda a: np.array(["2020-01-01"], dtype="datetime64[D]"),
    lambda a: _HUGE_NPY.getvalue() + b"\0" * 16,
    lambda a: b"\x93NUMPY garbage",
]
NOT_NPZ = [_npy(np.zeros((2, 2))), b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.", b"PK\x05\x06", b""]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


class Fuzz:
    """Hostile file contents drawn from a seeded random generator (see the module docstring)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        # The share of lines, files and values made odd: some inputs nearly clean, so that frames get
        # through to images, depth, undistortion and poses; others hostile throughout.
        self.hostility = self.rng.choice([0.05, 0.2, 0.5, 0.9])
        self.clean = False  # whether the line being made takes usual values only

    def hostile(self) -> bool:
        """Whether to make the next thing odd."""
        return self.chance(self.hostility)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def binary(self, max_size: int = 48) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, max_size))

    def text(self, max_size: int = 6) -> str:
        return "".join(self.rng.choice(CHARACTERS) for _ in range(self.rng.randint(0, max_size)))

    def mutate(self, data: bytes) -> bytes:
        """``data`` truncated, with bytes flipped, inserted or deleted (1 to 3 times)."""
        out = bytearray(data)
        for _ in range(self.rng.randint(1, 3)):
            at = self.rng.randint(0, len(out))
            kind = self.rng.choice(["truncate", "flip", "insert", "delete"])
            if kind == "truncate":
                del out[at:]
            elif kind == "flip" and at < len(out):
                out[at] ^= self.rng.randint(1, 255)
            elif kind == "insert":
                out[at:at] = self.rng.randbytes(self.rng.randint(1, 8))
            else:
                del out[at:at + self.rng.randint(1, 16)]
        return bytes(out)

    # --- numbers and lines
    def finite_float(self) -> float:
        """Any finite double (subnormal, huge, negative zero...), or an ordinary one."""
        value = struct.unpack("<d", self.rng.randbytes(8))[0]
        return value if math.isfinite(value) and self.chance(0.5) else self.rng.uniform(-1.0, 1.0)

    def number(self) -> str:
        """A number as text: adversarial, any double (NaN payloads, subnormals, huge), ordinary, or not one."""
        kind = self.rng.randrange(6)
        if kind == 0:
            return self.rng.choice(ADVERSARIAL_NUMBERS)
        if kind == 1:
            return repr(struct.unpack("<d", self.rng.randbytes(8))[0])
        if kind == 2:
            return repr(self.rng.uniform(-10, 10))
        if kind == 3:
            return str(self.rng.randint(-(2**70), 2**70))
        return self.text(4) if kind == 4 else str(self.rng.randint(-3, 3))

    # The field makers give a usual value on a clean line (see :meth:`line`), else often an odd one.
    def time(self) -> str:
        if self.clean:
            return f"{self.rng.choice(CLEAN_TIMES):.6f}"
        return f"{self.rng.choice(TIMES):.6f}" if self.chance(0.5) else self.number()

    def time_ns(self) -> str:
        ns = 1403636579763555584 + int(self.rng.choice(CLEAN_TIMES if self.clean else TIMES[:-1]) * 1e9)
        return str(ns) if self.clean or self.chance(0.5) else self.number()

    def position(self) -> str:
        return self.rng.choice(["0", "1.5", "-2"]) if self.clean or self.chance(0.5) else self.number()

    def quaternion(self) -> str:
        if self.clean:
            return self.rng.choice(QUATERNIONS[:3:2])
        return self.rng.choice(QUATERNIONS) if self.chance(0.6) else " ".join(self.number() for _ in range(4))

    def file_name(self, *usual: str) -> str:
        """One of the ``usual`` names, else a name of a missing or odd file, or random text."""
        if usual and (self.clean or self.chance(0.5)):
            return self.rng.choice(usual)
        return self.rng.choice(FILE_NAMES) if self.chance(0.7) else self.text(8)

    def line(self, *fields: Callable[[], str], separator: str = " ") -> str:
        """A line of ``fields``: clean (usual values, the separator of the format) or with odd values and
        sometimes a field too few or too many."""
        self.clean = not self.hostile()
        values = [field() for field in fields]
        change = 0 if self.clean else self.rng.choice([0, 0, 0, -1, 1, "one"])
        values = values[:1] if change == "one" else (values + [self.number()])[:len(values) + change]
        return (separator if self.clean else self.rng.choice([" ", "\t", ",", "  ", " , "])).join(values)

    def text_file(self, line: Callable[[], str], max_lines: int = 6) -> bytes:
        """Lines among comments and blank lines, any line ending, maybe a BOM, maybe garbled or not text."""
        lines = [line() if self.chance(0.8) else self.rng.choice(["", "# comment", "   ", "#"])
                 for _ in range(self.rng.randint(0, max_lines))]
        text = self.rng.choice(["\n", "\r\n", "\r"]).join(lines) + self.rng.choice(["", "\n"])
        data = self.rng.choice([b"", b"\xef\xbb\xbf"]) + text.encode("utf-8", "surrogatepass")
        if not self.hostile():
            return data
        kind = self.rng.randrange(3)
        if kind == 0:
            return self.mutate(data)
        return self.binary() if kind == 1 else data + b"\xff\xfe\x00garbage\n"

    def trajectory_file(self, max_lines: int = 6) -> bytes:
        return self.text_file(lambda: self.line(self.time, self.position, self.position, self.position,
                                                self.quaternion), max_lines)

    # --- images, YAML, archives
    def image(self) -> bytes:
        """Valid images, broken ones, and headers of other formats claiming any size."""
        kind = self.rng.randrange(8)
        if kind < 4:
            data = self.rng.choice(VALID_IMAGES)
            return data if kind < 2 else self.mutate(data)
        if kind == 4:
            return self.rng.choice(MAGICS) + self.binary()
        if kind == 5:  # a well-formed PNG header of any size, bit depth and colour type
            header = struct.pack(">IIBBBBB", self.side(), self.side(), self.rng.choice([1, 3, 8, 16]),
                                 self.rng.choice([0, 2, 3, 4, 6, 7]), 0, 0, 0)
            return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(self.binary()))
                    + _png_chunk(b"IEND", b""))
        if kind == 6:
            magic, scale = self.rng.choice(["P5", "P6", "PF", "Pf"]), self.rng.choice(["255", "65535", "-1.0", "0"])
            return f"{magic}\n{self.side()} {self.side()}\n{scale}\n".encode() + self.binary()
        return self.binary()

    def side(self) -> int:
        return self.rng.choice(IMAGE_SIDES) if self.chance(0.5) else self.rng.randint(0, 2**32 - 1)

    def images(self, names: dict[str, bytes]) -> dict[str, bytes | None]:
        """The files ``names`` (name -> what a good one holds): mostly good, else any image, absent or a folder."""
        files: dict[str, bytes | None] = {}
        for name, good in names.items():
            kind = self.rng.randrange(5) if self.hostile() else -1
            if kind < 3:
                files[name] = good if kind < 0 else self.image()
            elif kind == 3:
                files[name] = None
        return files

    def yaml_document(self, template: dict[str, str]) -> bytes:
        """``template`` (key -> YAML value) with values replaced, a key dropped, an alias bomb, or garbled."""
        values = dict(template)
        for _ in range(self.rng.randint(0, 3)):
            values[self.rng.choice(sorted(template))] = self.yaml_value()
        if self.chance(0.2):
            del values[self.rng.choice(sorted(values))]
        prefix = ""
        if self.chance(0.15) and values:
            prefix, values[self.rng.choice(sorted(values))] = ALIAS_BOMB, "*l8"
        data = (prefix + "".join(f"{k}: {v}\n" for k, v in values.items())).encode("utf-8", "surrogatepass")
        kind = self.rng.randrange(10)
        if kind == 0:
            return self.mutate(data)
        if kind == 1:
            return self.binary()
        return self.rng.choice([b"", b"- a\n- b\n", b"\xff\xfe", b"key: [unclosed\n"]) if kind == 2 else data

    def yaml_value(self) -> str:
        kind = self.rng.randrange(3)
        if kind == 0:
            return self.rng.choice(YAML_VALUES)
        return repr(self.number()) if kind == 1 else repr(self.text())

    def camera_file(self) -> bytes | None:
        """A valid camera.yaml of the 8 x 6 images (so that readers get past it), else none or fuzzed."""
        if not self.hostile():
            return CAMERA_YAML + (b"distortion: [0.1, -0.1, 0.0, 0.0, 0.01]\n" if self.chance(0.3) else b"")
        return None if self.chance(0.1) else self.yaml_document(CAMERA_TEMPLATE)

    def npz(self) -> bytes:
        """A height-map archive with arrays of any dtype and shape, keys missing, raw or corrupted members."""
        ny, nx = self.rng.choice([(2, 2), (3, 4), (1, 5), (0, 3)])
        arrays: dict[str, np.ndarray | bytes] = {
            "heights": np.zeros((ny, nx), np.float32), "information": np.ones((ny, nx), np.float32),
            "colors": np.full((ny, nx, 3), 0.5, np.float32), "observed": np.zeros((ny, nx), bool),
            "origin": np.zeros(2), "cell_size": np.float64(0.1), "prior_height": np.float64(0.0),
            "prior_information": np.float64(1.0),
        }
        keys = sorted(arrays)
        for key in self.rng.sample(keys, self.rng.randint(0, 3)):
            arrays[key] = self.rng.choice(SPOILERS)(arrays[key])
        for key in self.rng.sample(keys, self.rng.choice([0, 0, 0, 1, 2])):
            del arrays[key]
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", self.rng.choice([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])) as archive:
            for key, value in arrays.items():
                name = key if self.chance(0.05) else key + ".npy"  # without .npy, numpy hands back raw bytes
                archive.writestr(name, value if isinstance(value, bytes) else _npy(value))
        data, kind = buffer.getvalue(), self.rng.randrange(8)
        if kind == 0:
            return self.mutate(data)
        if kind == 1:
            return self.binary()
        return self.rng.choice(NOT_NPZ) if kind == 2 else data


# ----------------------------------------------------------------------------- TUM RGB-D and ICL-NUIM


IMAGE_FILES = {"rgb/0.png": VALID_IMAGES[0], "rgb/1.png": VALID_IMAGES[1], "depth/0.png": VALID_IMAGES[2],
               "depth/1.png": VALID_IMAGES[2]}


def tum_files(fuzz: Fuzz) -> dict[str, bytes | None]:
    def rgb_line() -> str:
        return fuzz.line(fuzz.time, lambda: fuzz.file_name("rgb/0.png", "rgb/1.png"))

    def depth_line() -> str:
        return fuzz.line(fuzz.time, lambda: fuzz.file_name("depth/0.png", "depth/1.png"))

    files: dict[str, bytes | None] = {"rgb.txt": fuzz.text_file(rgb_line), **fuzz.images(IMAGE_FILES)}
    if fuzz.chance(0.6):
        files["depth.txt"] = fuzz.text_file(depth_line)
    if fuzz.chance(0.6):
        files["groundtruth.txt"] = fuzz.trajectory_file()
    if (camera := fuzz.camera_file()) is not None:
        files["camera.yaml"] = camera
    if fuzz.chance(0.1):
        files["gt_heightmap.npz"] = fuzz.npz()
    return files


@FUZZ
@given(seed=SEED)
@known_input(seed=1_939_034_460)  # a principal point far off the image: undistortion leaves no valid depth
def fuzz_tum(seed: int) -> None:
    fuzz = Fuzz(seed)
    with example("tum", tum_files(fuzz)) as root:
        check_dataset(root, root, undistort=fuzz.chance(0.5), require_depth=fuzz.chance(0.5))


def icl_files(fuzz: Fuzz) -> dict[str, bytes | None]:
    def association() -> str:
        return fuzz.line(fuzz.time, lambda: fuzz.file_name("depth/0.png", "depth/1.png"), fuzz.time,
                         lambda: fuzz.file_name("rgb/0.png", "rgb/1.png"))

    files: dict[str, bytes | None] = {"associations.txt": fuzz.text_file(association), **fuzz.images(IMAGE_FILES)}
    if fuzz.chance(0.6):
        files["traj.gt.freiburg"] = fuzz.trajectory_file()
    if (camera := fuzz.camera_file()) is not None:
        files["camera.yaml"] = camera
    return files


@FUZZ
@given(seed=SEED)
def fuzz_icl_nuim(seed: int) -> None:
    with example("icl-nuim", icl_files(Fuzz(seed)), "living_room_traj0_frei_png") as root:
        check_dataset(root, root)


def test_fuzz_tum():
    run_fuzz("tum", fuzz_tum)


def test_fuzz_icl_nuim():
    run_fuzz("icl-nuim", fuzz_icl_nuim)


# ----------------------------------------------------------------------------- EuRoC MAV


EUROC_IMAGES = ["1403636579763555584.png", "1403636579813555584.png", "x.png"]
EUROC_IMAGE_FILES = {f"mav0/cam0/data/{name}": VALID_IMAGES[4] for name in EUROC_IMAGES}  # grey, as EuRoC's


def euroc_files(fuzz: Fuzz) -> dict[str, bytes | None]:
    def image_line() -> str:
        return fuzz.line(fuzz.time_ns, lambda: fuzz.file_name(*EUROC_IMAGES), separator=",")

    def gt_line() -> str:  # t [ns], p x y z, q w x y z, velocities and biases
        fields = (fuzz.time_ns, fuzz.position, fuzz.position, fuzz.position, fuzz.quaternion, lambda: "0,0,0")
        return fuzz.line(*fields, separator=",").replace(" ", ",")

    sensor = "".join(f"{k}: {v}\n" for k, v in SENSOR_TEMPLATE.items()).encode()
    files: dict[str, bytes | None] = {
        "mav0/cam0/data.csv": fuzz.text_file(image_line),
        "mav0/cam0/sensor.yaml": fuzz.yaml_document(SENSOR_TEMPLATE) if fuzz.hostile() else sensor,
        **fuzz.images(EUROC_IMAGE_FILES),
    }
    if fuzz.chance(0.6):
        files["mav0/state_groundtruth_estimate0/data.csv"] = fuzz.text_file(gt_line)
    if fuzz.chance(0.3) and (camera := fuzz.camera_file()) is not None:
        files["camera.yaml"] = camera
    return files


@FUZZ
@given(seed=SEED)
def fuzz_euroc(seed: int) -> None:
    fuzz = Fuzz(seed)
    with example("euroc", euroc_files(fuzz), "MH_01_easy") as root:
        check_dataset(root, root, undistort=fuzz.chance(0.5))


def test_fuzz_euroc():
    run_fuzz("euroc", fuzz_euroc)


# ----------------------------------------------------------------------------- image folder


IMAGE_NAMES = ["1305031102.175304.png", "1305031102.208404.jpg", "1403636579763555584.png", "2.png", "10.png",
               "frame.JPEG", ".hidden.png", "._1.png", "\udcff\udcfe.png", "x" * 250 + ".png", "0.5.png",
               "\u0661\u0662.\u0663.png", "1" * 200 + ".png"]


def image_name(fuzz: Fuzz) -> str:
    """A file name of an image folder: time stamps, numbers, hidden, not UTF-8 ("\udcff"), long, or random."""
    if fuzz.chance(0.7):
        return fuzz.rng.choice(IMAGE_NAMES)
    # What a file name cannot hold made into what it can: "/" and NUL replaced, a lone surrogate as the
    # byte it escapes.
    return fuzz.text(6).replace("/", "_").replace("\x00", "_").replace("\ud800", "\udcff") + ".png"


def image_folder_files(fuzz: Fuzz) -> dict[str, bytes | None]:
    sub = fuzz.rng.choice(["", "", "rgb/", "images/"])
    names = {image_name(fuzz) for _ in range(fuzz.rng.randint(1, 4))}
    files = fuzz.images({sub + name: VALID_IMAGES[0] for name in names})
    if (camera := fuzz.camera_file()) is not None:
        files["camera.yaml"] = camera
    if fuzz.chance(0.5):
        files[fuzz.rng.choice(["trajectory.txt", "groundtruth.txt"])] = fuzz.trajectory_file()
    return files


@FUZZ
@given(seed=SEED)
def fuzz_image_folder(seed: int) -> None:
    fuzz = Fuzz(seed)
    with example("image folder", image_folder_files(fuzz)) as root:
        check_dataset(root, root, fps=fuzz.rng.choice([None, 30.0, 1e-300, 1e300]))


def test_fuzz_image_folder():
    run_fuzz("image folder", fuzz_image_folder)


# ----------------------------------------------------------------------------- video


def video_files(fuzz: Fuzz) -> tuple[str, dict[str, bytes | None]]:
    """(the video's name, the folder's files)."""
    ext = fuzz.rng.choice(sorted(VIDEOS))
    content = fuzz.rng.choice([VIDEOS[ext], fuzz.binary(), HLS_PLAYLIST, *[fuzz.mutate(VIDEOS[ext])] * 3])
    name = fuzz.rng.choice(["clip"] * 6 + ["\udcffclip", "fr3_clip"]) + ext  # "\udcff": a name that is not UTF-8
    files: dict[str, bytes | None] = {name: content}
    if fuzz.chance(0.1):
        files["other.avi"] = VIDEOS[".avi"]  # two videos: the folder is ambiguous
    if (camera := fuzz.camera_file()) is not None:
        files["camera.yaml"] = camera
    if fuzz.chance(0.5):
        files["trajectory.txt"] = fuzz.trajectory_file()
    return name, files


@FUZZ
@given(seed=SEED)
@known_input(seed=1_268_004_494_912_538_379)  # an AVI chunk of a garbled size: cv2.error from read()
def fuzz_video(seed: int) -> None:
    fuzz = Fuzz(seed)
    name, files = video_files(fuzz)
    with example("video", files) as root:
        path = root / name if fuzz.chance(0.5) else root  # the video, or the folder holding it
        check_dataset(path, root, fps=fuzz.rng.choice([None, None, 10.0, 1e-300]))


def test_fuzz_video():
    run_fuzz("video", fuzz_video)


# ----------------------------------------------------------------------------- camera.yaml


@FUZZ
@given(seed=SEED)
def fuzz_camera_yaml(seed: int) -> None:
    with example("camera.yaml", {"camera.yaml": Fuzz(seed).yaml_document(CAMERA_TEMPLATE)}) as root:
        path = root / "camera.yaml"
        try:
            camera, depth_scale = load_camera_yaml(path)
        except ValueError as exc:
            check_error_names(exc, path)
            return
        assert 0 < camera.width <= MAX_IMAGE_SIDE and 0 < camera.height <= MAX_IMAGE_SIDE
        assert depth_scale is None or (math.isfinite(depth_scale) and np.float32(depth_scale) > 0)


def test_fuzz_camera_yaml():
    run_fuzz("camera.yaml", fuzz_camera_yaml)


# ----------------------------------------------------------------------------- TUM trajectories


@FUZZ
@given(seed=SEED)
def fuzz_trajectory(seed: int) -> None:
    fuzz = Fuzz(seed)
    with example("trajectory", {"groundtruth.txt": fuzz.trajectory_file(max_lines=8)}) as root:
        trajectory, problems = read_tum_trajectory(root / "groundtruth.txt")
        assert all(str(root / "groundtruth.txt") in problem for problem in problems)
        ts = trajectory.timestamps
        assert np.isfinite(ts).all() and (np.diff(ts) > 0).all()
        assert np.allclose(np.linalg.norm(trajectory.quaternions, axis=1), 1.0)
        # Every time the readers ask about: the samples, between them, beside them, anywhere.
        queries = [fuzz.finite_float() for _ in range(3)]
        for t in [*ts, *(ts[:-1] + np.diff(ts) / 2), *(ts + 0.01), *queries]:
            pose = trajectory.pose_at(float(t), fuzz.rng.choice([0.02, 1e300]))
            if pose is not None:
                validate_pose(pose)
        for i, j in associate(ts, np.asarray(queries)):
            assert abs(ts[i] - queries[j]) < 0.02


def test_fuzz_trajectory():
    run_fuzz("trajectory", fuzz_trajectory)


# ----------------------------------------------------------------------------- heightmap.npz


@FUZZ
@given(seed=SEED)
def fuzz_heightmap(seed: int) -> None:
    with example("heightmap.npz", {"heightmap.npz": Fuzz(seed).npz()}) as root:
        path = root / "heightmap.npz"
        try:
            grid = load_heightmap(path)
        except ValueError as exc:
            check_error_names(exc, path)
            return
        check_heightmap(grid)


def test_fuzz_heightmap():
    run_fuzz("heightmap.npz", fuzz_heightmap)
