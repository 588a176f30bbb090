#version 430
// The id of the triangle each pixel sees, alone: what differentiable fusion (heightfusion/fusion_autograd.py)
// reads back each Gauss-Newton step, one int32 per pixel. Id as in heightfusion/heightmap.py:
// 2 * (i * (nx - 1) + j) + k for triangle k of cell (i, j).
#include "triangle_hit.glsl"

layout(location = 0) out int out_triangle;

void main() {
    TriangleHit hit = triangle_hit();
    out_triangle = 2 * (hit.cell.y * (nx - 1) + hit.cell.x) + hit.k;
}
