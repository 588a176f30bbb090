"""Monocular depth by plane-sweep stereo: accuracy and speed, next to OpenCV's StereoSGBM, as one table.

    python benchmarks/bench_depth.py [--repeats 10] [--frames 120] [--threads N] [--single-level]

``--single-level`` runs every check with ``StereoConfig(coarse_to_fine=False)``: the whole sweep at the
image's resolution, as before the coarse-to-fine default.

1. Middlebury 2014 "motorcycle" (``skimage.data.stereo_motorcycle``: 741x500, f = 994.978 px, baseline
   193.001 mm, disparity without doffs so both views share the intrinsics) as a two-view problem with
   poses; bad-2.0 = share of the pixels a method marks valid whose disparity is off by more than 2 px,
   density = share of the ground-truth pixels it marks valid. StereoSGBM runs on the same pair in the
   same run, 64 disparities, its usual settings (P1 = 8 * 3 * block^2, P2 = 32 * 3 * block^2,
   uniqueness 10, speckle window 100 / range 2, disp12MaxDiff 1), blocks of 5 and, its best here, 3 with
   eight paths. Goal: bad-2.0 no worse than SGBM's at a density at most 10 points below.
2. Synthetic sequences at 320x240, 200 frames: reference frames every 20; up to four sources chosen by
   :func:`heightfusion.depth.select_sources` among the 12 frames either side (at the true median depth).
   Median |relative depth error| on valid pixels (goal <= 2 %), share of the textured pixels (local std
   >= 0.01 with a surface behind them) that are valid (goal >= 70 %), share within 1 sigma (goal 55-80 %).
3. End to end: ``replay --depth mvs`` of a synthetic floor sequence written without depth images:
   height RMSE on smooth areas in cell sizes (goal <= 1.5) and completeness (goal >= 80 %).
4. Speed: one estimate at 320x240, 64 hypotheses, 4 sources (goal <= 150 ms on the benchmark's CPU).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

import heightfusion as hf
from heightfusion.depth import (
    KeyframeConfig,
    PlaneSweepStereo,
    StereoConfig,
    select_sources,
)
from heightfusion.replay import replay
from heightfusion.synthetic import generate, write_tum

MIDDLEBURY_FOCAL = 994.978
MIDDLEBURY_CENTRE = (311.193, 254.877)
MIDDLEBURY_BASELINE = 0.193001
DISPARITIES = 64
#: Settings every StereoConfig of the run gets (``--single-level``).
OVERRIDES: dict = {}


def configured(config: StereoConfig) -> StereoConfig:
    """``config`` with the run's :data:`OVERRIDES`."""
    return replace(config, **OVERRIDES)


@dataclass
class Row:
    """One line of the result table."""

    check: str
    what: str
    value: str
    goal: str
    met: bool | None = None


def median_ms(fn, repeats: int) -> tuple[float, float]:
    """(median, min) milliseconds of ``fn`` over ``repeats`` runs after one warm-up."""
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples), min(samples)


# --- 1. Middlebury ------------------------------------------------------------------------------------
def middlebury_rows() -> list[Row]:
    from skimage.data import stereo_motorcycle

    left, right, truth = stereo_motorcycle()
    known = np.isfinite(truth)

    def score(disparity: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
        scored = valid & known
        return float(np.mean(np.abs(disparity[scored] - truth[scored]) > 2.0)), float(scored.sum() / known.sum())

    rows = []
    sgbm_best = None
    for block, mode, name in ((5, cv2.STEREO_SGBM_MODE_SGBM, "5 paths, block 5"), (3, cv2.STEREO_SGBM_MODE_HH, "8 paths, block 3")):
        sgbm = cv2.StereoSGBM_create(
            minDisparity=0, numDisparities=DISPARITIES, blockSize=block, P1=8 * 3 * block**2, P2=32 * 3 * block**2,
            disp12MaxDiff=1, uniquenessRatio=10, speckleWindowSize=100, speckleRange=2, mode=mode,
        )
        start = time.perf_counter()
        disparity = sgbm.compute(left, right).astype(np.float32) / 16.0
        ms = (time.perf_counter() - start) * 1e3
        bad, density = score(disparity, disparity >= 0)
        if sgbm_best is None or bad < sgbm_best[0]:
            sgbm_best = (bad, density)
        rows.append(Row("1 Middlebury", f"SGBM ({name})", f"bad-2.0 {bad:6.2%}  density {density:6.2%}  {ms:5.0f} ms", "baseline"))

    camera = hf.PinholeCamera(left.shape[1], left.shape[0], MIDDLEBURY_FOCAL, MIDDLEBURY_FOCAL, *MIDDLEBURY_CENTRE)
    right_T_wc = np.eye(4)
    right_T_wc[0, 3] = MIDDLEBURY_BASELINE
    fb = MIDDLEBURY_FOCAL * MIDDLEBURY_BASELINE
    # Disparities 1..63, one hypothesis per pixel of disparity, like SGBM's 64.
    config = StereoConfig(num_hypotheses=DISPARITIES, planes="fronto", min_depth=fb / (DISPARITIES - 1),
                          max_depth=fb / 1.0)
    stereo = PlaneSweepStereo(configured(config))
    start = time.perf_counter()
    est = stereo.estimate(camera, np.eye(4), left, [right], [right_T_wc])
    ms = (time.perf_counter() - start) * 1e3
    bad, density = score(np.where(est.valid, fb / est.depth, np.nan), est.valid)
    met = bad <= sgbm_best[0] and density >= sgbm_best[1] - 0.10
    rows.append(Row("1 Middlebury", "ours (two views, fronto)", f"bad-2.0 {bad:6.2%}  density {density:6.2%}  {ms:5.0f} ms",
                    f"bad <= {sgbm_best[0]:.2%}, density >= {sgbm_best[1] - 0.10:.2%}", met))
    return rows


# --- 2. synthetic sequences ---------------------------------------------------------------------------
SYNTHETIC = (
    ("floor", "fronto 0.3-10 m", StereoConfig()),
    ("floor", "below 0.3-10 m", StereoConfig(planes="below")),
    ("floor", "ground -0.05-0.3 m", StereoConfig(planes="ground", min_height=-0.05, max_height=0.3)),
    ("terrain", "fronto 1-8 m", StereoConfig(min_depth=1.0, max_depth=8.0)),
    ("terrain", "below 1-8 m", StereoConfig(planes="below", min_depth=1.0, max_depth=8.0)),
    ("terrain", "ground -0.6-0.6 m", StereoConfig(planes="ground", min_height=-0.6, max_height=0.6)),
)


def synthetic_rows(sequences: dict) -> list[Row]:
    rows = []
    for scene, label, config in SYNTHETIC:
        seq = sequences[scene]
        stereo = PlaneSweepStereo(configured(config))
        errors, within, valid_textured, textured_count = [], [], 0, 0
        for ref in range(20, 200, 20):
            reference = seq.frames[ref]
            truth = reference.depth
            window = [i for i in range(ref - 12, ref + 13) if i != ref and 0 <= i < len(seq)]
            chosen = select_sources(seq.camera, reference.T_wc, [seq.frames[i].T_wc for i in window],
                                    float(np.nanmedian(truth)), KeyframeConfig())
            if not chosen:
                continue
            sources = [seq.frames[window[i]] for i in chosen]
            est = stereo.estimate(seq.camera, reference.T_wc, reference.image, [f.image for f in sources],
                                  [f.T_wc for f in sources])
            valid = est.valid & np.isfinite(truth)
            error = est.depth[valid] - truth[valid]
            errors.append(np.abs(error) / truth[valid])
            within.append(np.abs(error) <= est.sigma[valid])
            textured = _textured(reference.image) & np.isfinite(truth)
            valid_textured += int((est.valid & textured).sum())
            textured_count += int(textured.sum())
        relative = float(np.median(np.concatenate(errors)))
        share = valid_textured / textured_count
        calibration = float(np.mean(np.concatenate(within)))
        rows.append(Row("2 synthetic", f"{scene}, {label}",
                        f"median rel {relative:6.2%}  textured valid {share:6.2%}  within 1 sigma {calibration:6.2%}",
                        "<= 2 %, >= 70 %, 55-80 %", relative <= 0.02 and share >= 0.70 and 0.55 <= calibration <= 0.80))
    return rows


def _textured(image: np.ndarray) -> np.ndarray:
    """Pixels whose grey level varies (std >= 0.01 of the range) over their 5x5 neighbourhood."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    mean = cv2.blur(grey, (5, 5))
    return np.sqrt(np.maximum(cv2.blur(grey * grey, (5, 5)) - mean * mean, 0.0)) >= 0.01


# --- 3. end to end ------------------------------------------------------------------------------------
def replay_rows(frames: int) -> list[Row]:
    rows = []
    seq = generate("floor", frames=frames)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_tum(seq, Path(tmp) / "floor")
        (folder / "depth.txt").unlink()  # images and poses only
        shutil.rmtree(folder / "depth")
        for label, config in (("fronto 0.3-10 m", StereoConfig()), ("below 0.3-10 m", StereoConfig(planes="below")),
                              ("ground -0.05-0.3 m", StereoConfig(planes="ground", min_height=-0.05, max_height=0.3))):
            result = replay(folder, depth="mvs", stereo=configured(config), progress=False)
            e = result.evaluation
            cells = e["smooth_rmse"] / result.grid.cell_size
            skipped = sum(result.skipped.values())
            rows.append(Row("3 replay floor", f"mvs, {label}",
                            f"smooth RMSE {cells:4.2f} cells ({e['smooth_rmse'] * 1e3:.1f} mm)  completeness {e['completeness']:6.2%}"
                            f"  within 1/2 sigma {e['calib_1sigma']:.2f}/{e['calib_2sigma']:.2f}"
                            f"  {result.frames_used} fused, {skipped} skipped, stereo {result.ms_per_frame['stereo']:.0f} ms/frame",
                            "<= 1.5 cells, >= 80 %", cells <= 1.5 and e["completeness"] >= 0.80))
    return rows


# --- 4. speed -----------------------------------------------------------------------------------------
def speed_rows(seq, repeats: int) -> list[Row]:
    reference = seq.frames[60]
    sources = [seq.frames[i] for i in (54, 57, 63, 66)]
    stereo = PlaneSweepStereo(configured(StereoConfig(num_hypotheses=64)))
    rows = []
    default_threads = torch.get_num_threads()
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        median, best = median_ms(lambda: stereo.estimate(seq.camera, reference.T_wc, reference.image,
                                                          [f.image for f in sources], [f.T_wc for f in sources]), repeats)
        rows.append(Row("4 speed", f"320x240, 64 hypotheses, 4 sources, {threads} thread(s)",
                        f"median {median:6.1f} ms  best {best:6.1f} ms", "<= 150 ms", median <= 150))
    torch.set_num_threads(default_threads)
    return rows


def print_table(rows: list[Row]) -> None:
    widths = [max(len(getattr(r, name)) for r in rows) for name in ("check", "what", "value", "goal")]
    for r in rows:
        verdict = "" if r.met is None else ("met" if r.met else "NOT met")
        print(f"{r.check:<{widths[0]}}  {r.what:<{widths[1]}}  {r.value:<{widths[2]}}  {r.goal:<{widths[3]}}  {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10, help="timed runs of the speed check")
    parser.add_argument("--frames", type=int, default=120, help="frames of the end-to-end floor sequence")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--single-level", action="store_true", help="StereoConfig(coarse_to_fine=False) throughout")
    args = parser.parse_args()
    if args.single_level:
        OVERRIDES["coarse_to_fine"] = False
    if args.threads:
        torch.set_num_threads(args.threads)
    sequences = {scene: generate(scene, frames=200) for scene in ("floor", "terrain")}
    rows = middlebury_rows()
    rows += synthetic_rows(sequences)
    rows += replay_rows(args.frames)
    rows += speed_rows(sequences["floor"], args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device cpu, "
          f"{'single level' if args.single_level else 'coarse to fine'}\n")
    print_table(rows)


if __name__ == "__main__":
    main()
