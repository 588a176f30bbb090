"""Every renderer backend side by side: ms per full render, and the map a replay fuses with it.

    python benchmarks/bench_backends.py [--repeats 20] [--frames 40] [--torch-threads N]

ms/render: ``renderer.render`` (Fragments with derivatives, read back) at 320x240 of a 128x128 map, the
scene of bench_render.py; median over ``--repeats`` interleaved calls after a warm-up. Replay: the same
synthetic sequence for every backend (the "floor" scene with Kinect-like depth noise, 320x240,
``--frames`` frames, written in the TUM layout to a temporary folder) through
:func:`heightfusion.replay.replay`, as ``heightfusion replay --backend NAME`` runs it; frames/s include
reading the frames, smooth RMSE and completeness are :func:`heightfusion.metrics.evaluate`'s against
the scene's ground truth.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from bench_render import make_scene, time_ms

import heightfusion as hf
from heightfusion.replay import replay
from heightfusion.synthetic import generate, write_tum


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20, help="timed renders per backend (default 20)")
    parser.add_argument("--frames", type=int, default=40, help="frames of the replayed sequence (default 40)")
    parser.add_argument("--torch-threads", type=int, help="torch's CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)

    renderers = {name: hf.make_renderer(name) for name in hf.BACKENDS}
    width, height = 320, 240
    cam = hf.PinholeCamera(width, height, 0.8 * width, 0.8 * width, (width - 1) / 2, (height - 1) / 2)
    grid = make_scene(128)
    T_wc = hf.look_at(eye=(-1.3, 1.28, 0.8), target=(1.28, 1.28, 0.0))
    ms = time_ms({name: (lambda r=r: r.render(grid, cam, T_wc)) for name, r in renderers.items()}, args.repeats)
    for renderer in renderers.values():
        renderer.release()

    results = {}
    with tempfile.TemporaryDirectory() as folder:
        write_tum(generate("floor", frames=args.frames, width=width, height=height, noise=True), folder, progress=False)
        for name in hf.BACKENDS:
            results[name] = replay(folder, backend=name, progress=False)

    print(f"{hf.render.context.describe()}; torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s)")
    print(f"render: {width}x{height}, 128^2 map, median of {args.repeats}; "
          f"replay: 'floor' scene, {args.frames} frames {width}x{height}, noisy depth")
    print(f"{'backend':<12} {'ms/render':>9} {'vs gl':>6} {'replay fps':>10} {'smooth RMSE mm':>14} {'completeness':>12}")
    for name in hf.BACKENDS:
        e = results[name].evaluation
        print(f"{name:<12} {ms[name]:9.1f} {ms[name] / ms['gl']:6.2f} {results[name].fps:10.1f} "
              f"{e['smooth_rmse'] * 1e3:14.2f} {e['completeness']:12.3f}")


if __name__ == "__main__":
    main()
