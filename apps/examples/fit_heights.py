"""Recover a height map from a few depth images with a torch optimiser, through heightfusion.autograd.

    python apps/examples/fit_heights.py [--views 4] [--steps 200] [--backend gl]

The target depth images come from the synthetic `terrain` scene (exact ray casting of the analytic
surface, not the renderer); the map starts flat and Adam minimises the squared depth error of the
rendered views. Prints the height error against the ground truth every few steps.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import heightfusion as hf
from heightfusion.autograd import render_depth
from heightfusion.synthetic import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--backend", default="gl", choices=hf.BACKENDS)
    args = parser.parse_args()

    seq = generate("terrain", frames=12, width=160, height=120)
    frames = seq.frames[:: max(1, len(seq) // args.views)][: args.views]
    truth = seq.gt_heightmap
    poses = np.stack([f.T_wc for f in frames])
    target = torch.from_numpy(np.stack([f.depth for f in frames])).double()
    renderer = hf.make_renderer(args.backend)

    heights = torch.zeros(truth.shape, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.Adam([heights], lr=args.lr)
    seen = np.zeros(truth.num_vertices, dtype=bool)
    for f in frames:
        ids = renderer.render(truth, f.camera, f.T_wc).vertex_ids
        seen[ids[ids >= 0]] = True
    for step in range(args.steps + 1):
        optimiser.zero_grad()
        residual = render_depth(heights, truth, seq.camera, poses, backend=renderer) - target
        loss = torch.nanmean(residual**2)
        loss.backward()
        optimiser.step()
        if step % 25 == 0:
            err = np.abs(heights.detach().numpy() - truth.heights).reshape(-1)[seen]
            print(f"step {step:4d}  depth RMSE {loss.sqrt().item() * 1e3:7.2f} mm  "
                  f"height error median {np.median(err) * 1e3:6.2f} mm, 90% {np.percentile(err, 90) * 1e3:6.2f} mm")


if __name__ == "__main__":
    main()
