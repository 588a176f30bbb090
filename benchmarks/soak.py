"""Soak test: memory and OpenGL objects over long runs (issue 14). Prints tables and a verdict; not a test.

    python benchmarks/soak.py                      # 10,000 frames, 2,000 Adam steps (a few minutes)
    python benchmarks/soak.py --frames 2000 --steps 400   # quick

1. Fusion: small frames (64x48 depth of the synthetic floor scene, cycled) fused with the ``gl`` backend
   into a 64x64 map by :class:`heightfusion.HeightMapFuser`; every ``--reset-every`` frames the map and
   the fuser are made anew and the old fuser released, as the live app's reset (key r) does.
2. Optimisation: Adam steps on a heights tensor through :func:`heightfusion.autograd.render_depth`
   (backend ``gl``, four views), the loss against depth rendered from a target terrain.

Every ``--report-every`` frames (and every tenth of the steps) a row gives the resident memory (VmRSS of
/proc/self/status), the OpenGL objects alive (created and not yet released, counted by wrapping the
moderngl context's factory methods and the objects' ``release``; an object garbage-collected without
``release()`` stays counted, as it stays alive in the driver) and the Python objects the collector tracks.

Goal: resident memory grows by at most 5 % from the first row (the first 1,000 frames, or the first
tenth of the steps, warm the caches) to the last; the OpenGL object counts are the same in every row;
after releasing the renderers no object of the run is left.
"""

from __future__ import annotations

import argparse
import collections
import functools
import gc
import math
import time

import numpy as np

import heightfusion as hf

RSS_GROWTH_GOAL = 0.05

# --- counting OpenGL objects --------------------------------------------------------------------------------

_FACTORIES = (
    "buffer", "texture", "depth_texture", "texture_array", "texture3d", "texture_cube", "depth_texture_cube",
    "framebuffer", "simple_framebuffer", "renderbuffer", "depth_renderbuffer", "program", "compute_shader",
    "vertex_array", "simple_vertex_array", "query", "sampler", "scope",
)


class GLObjectCounter:
    """Counts moderngl objects created and released, per type, in every context of this process."""

    def __init__(self) -> None:
        self.created: collections.Counter[str] = collections.Counter()
        self.released: collections.Counter[str] = collections.Counter()
        self._patched_classes: set[type] = set()

    def install(self) -> None:
        import moderngl

        for name in _FACTORIES:
            original = getattr(moderngl.Context, name, None)
            if original is not None:
                setattr(moderngl.Context, name, self._counting_factory(original))

    def _counting_factory(self, factory):
        @functools.wraps(factory)
        def create(ctx, *args, **kwargs):
            obj = factory(ctx, *args, **kwargs)
            self._count_release_of(type(obj))
            self.created[type(obj).__name__] += 1
            return obj

        return create

    def _count_release_of(self, cls: type) -> None:
        if cls in self._patched_classes:
            return
        import moderngl

        original = cls.release
        counter = self

        @functools.wraps(original)
        def release(obj):
            if not isinstance(getattr(obj, "mglo", None), moderngl.InvalidObject):  # the first release only
                counter.released[type(obj).__name__] += 1
            return original(obj)

        cls.release = release
        self._patched_classes.add(cls)

    def alive(self) -> dict[str, int]:
        return {k: self.created[k] - self.released[k] for k in sorted(self.created) if self.created[k] - self.released[k]}

    def total(self) -> int:
        return sum(self.alive().values())


# --- memory ---------------------------------------------------------------------------------------------------


def rss_mb() -> float:
    """Resident set size of this process, MiB (VmRSS of /proc/self/status)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


class Table:
    def __init__(self, title: str, unit: str, counter: GLObjectCounter) -> None:
        self.title, self.unit, self.counter = title, unit, counter
        self.rows: list[tuple[int, float, int, dict[str, int], int, float]] = []
        self._last = (0, time.perf_counter())

    def record(self, done: int) -> None:
        gc.collect()  # what is retained, not garbage waiting for the collector
        n0, t0 = self._last
        now = time.perf_counter()
        ms = (now - t0) * 1e3 / max(done - n0, 1)
        self._last = (done, now)
        python_objects = len(gc.get_objects()) - len(self.rows)  # less this table's own rows
        row = (done, rss_mb(), self.counter.total(), self.counter.alive(), python_objects, ms)
        self.rows.append(row)
        print(self.format_row(row), flush=True)

    def header(self) -> None:
        print(f"\n{self.title}")
        print(f"{self.unit:>8} {'RSS MiB':>9} {'growth':>8} {'GL alive':>9} {'py objects':>11} {'ms/' + self.unit[:-1]:>9}  GL objects alive by type")

    def format_row(self, row) -> str:
        done, rss, gl_total, gl_alive, py, ms = row
        growth = (rss / self.rows[0][1] - 1) if self.rows else 0.0
        kinds = " ".join(f"{k}={v}" for k, v in gl_alive.items())
        return f"{done:>8} {rss:>9.1f} {growth:>+8.2%} {gl_total:>9} {py:>11} {ms:>9.2f}  {kinds}"

    def verdict(self) -> tuple[bool, str]:
        first, last = self.rows[0], self.rows[-1]
        growth = last[1] / first[1] - 1
        gl_flat = len({r[2] for r in self.rows}) == 1 and all(r[3] == first[3] for r in self.rows)
        py_growth = last[4] - first[4]
        ok = growth <= RSS_GROWTH_GOAL and gl_flat
        text = (f"{self.title.split(':')[0]}: RSS {first[1]:.1f} -> {last[1]:.1f} MiB ({growth:+.2%}, goal <= "
                f"{RSS_GROWTH_GOAL:.0%}); GL objects alive {'flat at ' + str(first[2]) if gl_flat else 'NOT flat: ' + str([r[2] for r in self.rows])}; "
                f"Python objects {py_growth:+d} -> {'PASS' if ok else 'FAIL'}")
        return ok, text


# --- the two loops --------------------------------------------------------------------------------------------


def soak_fusion(frames: int, reset_every: int, report_every: int, width: int, height: int, n: int,
                counter: GLObjectCounter) -> Table:
    from heightfusion.synthetic import generate

    seq = generate("floor", frames=60, width=width, height=height, noise=True, seed=1)
    gt = seq.gt_heightmap
    x0, x1, y0, y1 = gt.extent
    cell = max(x1 - x0, y1 - y0) / (n - 1)
    config = hf.FusionConfig()

    table = Table(f"1. fusion: {frames} frames {width}x{height} (floor scene, {len(seq)} frames cycled), "
                  f"{n}x{n} map, gl backend, map and fuser made anew every {reset_every} frames", "frames", counter)
    gl_before = counter.total()
    renderer = hf.make_renderer("gl")
    grid = fuser = None
    table.header()
    fused = skipped = 0
    for i in range(frames):
        if i % reset_every == 0:  # the live app's reset: a new map and fuser, the old fuser released
            if fuser is not None:
                fuser.release()
            grid = hf.HeightMap((x0, y0), cell, (n, n))
            fuser = hf.HeightMapFuser(grid, renderer, config)
        k = i % len(seq)
        frame = seq.frames[k]
        try:
            fuser.fuse(frame.camera, frame.T_wc, frame.depth, frame.image, seq.sigmas[k])
            fused += 1
        except hf.fusion.FrameError:
            skipped += 1
        if (i + 1) % report_every == 0 or i + 1 == frames:
            table.record(i + 1)
    assert np.isfinite(grid.heights).all() and np.isfinite(grid.information).all()
    fuser.release()
    renderer.release()
    gc.collect()
    table.leftover = counter.total() - gl_before
    print(f"fused {fused}, skipped {skipped}; after releasing the fuser and the renderer: "
          f"{table.leftover} GL objects of the run left {counter.alive() or ''}")
    return table


def soak_optimisation(steps: int, width: int, height: int, n: int, counter: GLObjectCounter) -> Table:
    import torch

    from heightfusion.autograd import render_depth, shared_renderer

    torch.manual_seed(0)
    grid = hf.HeightMap((-1.0, -1.0), 2.0 / (n - 1), (n, n))
    xy = grid.vertex_xy()
    target = torch.tensor(0.15 * np.sin(2.5 * xy[..., 0]) * np.cos(2.0 * xy[..., 1]), dtype=torch.float32)
    camera = hf.PinholeCamera(width, height, 0.8 * width, 0.8 * width, (width - 1) / 2, (height - 1) / 2)
    poses = np.stack([hf.look_at((1.8 * math.cos(a), 1.8 * math.sin(a), 1.4), (0.0, 0.0, 0.0))
                      for a in np.linspace(0, 2 * math.pi, 4, endpoint=False)])
    gl_before = counter.total()
    with torch.no_grad():
        observed = render_depth(target, grid, camera, poses, backend="gl")
    mask = torch.isfinite(observed)
    heights = torch.zeros((n, n), dtype=torch.float32, requires_grad=True)
    optimiser = torch.optim.Adam([heights], lr=0.005)
    report_every = max(1, steps // 10)
    table = Table(f"2. optimisation: {steps} Adam steps through autograd.render_depth (gl, 4 views "
                  f"{width}x{height}, {n}x{n} heights)", "steps", counter)
    table.header()
    for step in range(steps):
        optimiser.zero_grad()
        depth = render_depth(heights, grid, camera, poses, backend="gl")
        seen = mask & torch.isfinite(depth)  # NaN where a view sees no surface (no gradient there)
        loss = ((depth - observed)[seen] ** 2).mean()
        loss.backward()
        optimiser.step()
        if (step + 1) % report_every == 0 or step + 1 == steps:
            table.record(step + 1)
    error = (heights.detach() - target).abs().median().item()
    shared_renderer("gl").release()
    shared_renderer.cache_clear()
    gc.collect()
    table.leftover = counter.total() - gl_before
    print(f"final loss {loss.item():.3g} m^2, median height error {error * 1e3:.2f} mm; after releasing the "
          f"shared renderer: {table.leftover} GL objects of the run left {counter.alive() or ''}")
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=10_000, help="frames to fuse (default 10000)")
    parser.add_argument("--steps", type=int, default=2_000, help="Adam steps (default 2000)")
    parser.add_argument("--reset-every", type=int, default=500, help="new map and fuser every N frames (default 500)")
    parser.add_argument("--report-every", type=int, default=1_000, help="a row every N frames (default 1000)")
    parser.add_argument("--size", type=int, nargs=2, default=(64, 48), metavar=("W", "H"), help="frame size (default 64 48)")
    parser.add_argument("--map", type=int, default=64, help="map side in vertices (default 64)")
    args = parser.parse_args()
    for name in ("frames", "steps", "reset_every", "report_every", "map"):
        if getattr(args, name) < (2 if name == "map" else 1):
            parser.error(f"--{name.replace('_', '-')} must be a positive number")

    import torch

    torch.set_num_threads(1)  # a shared 2-core machine: one thread is steadier
    counter = GLObjectCounter()
    counter.install()
    from heightfusion.render import context

    print(f"OpenGL: {context.describe()}; moderngl objects counted by wrapping the context's factories")
    print(f"start: RSS {rss_mb():.1f} MiB")
    width, height = args.size
    tables = [soak_fusion(args.frames, args.reset_every, args.report_every, width, height, args.map, counter),
              soak_optimisation(args.steps, width, height, args.map, counter)]
    print("\nverdict")
    ok = True
    for table in tables:
        passed, text = table.verdict()
        passed = passed and table.leftover == 0
        ok &= passed
        print(f"  {text}; left after release: {table.leftover}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
