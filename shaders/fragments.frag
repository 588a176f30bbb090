#version 430
// Full fragments in one pass, written so that the CPU only takes views of what it reads back.
// Triangle id as in heightfusion/heightmap.py: 2 * (i * (nx - 1) + j) + k for triangle k of cell (i, j).
#include "triangle_hit.glsl"

// (ny, nx, 3) vertex colours, read at the hit's vertices and weighted by its exact barycentrics: the
// rasterizer's own interpolation weights come from vertex positions snapped to its sub-pixel grid (on
// an NVIDIA GPU colours differed by up to 3e-3 from the barycentric mix on 5-pixel triangles).
layout(std430, binding = 2) readonly buffer Colors { float colors[]; };

layout(location = 0) out vec4 out_depth_bary;   // depth, b0, b1, b2
layout(location = 1) out vec4 out_grad;         // d depth / d h0, h1, h2, den
layout(location = 2) out ivec4 out_ids;         // vertex ids v0, v1, v2, triangle id
layout(location = 3) out vec4 out_color;        // r, g, b, 1
layout(location = 4) out vec4 out_normal;       // world normal x, y, z, 0

void main() {
    TriangleHit hit = triangle_hit();
    vec3 b;
    ivec3 ids;
    hit_vertices(hit, b, ids);
    out_depth_bary = vec4(hit.depth, b);
    out_grad = vec4(b / hit.den, hit.den);
    out_ids = ivec4(ids, 2 * (hit.cell.y * (nx - 1) + hit.cell.x) + hit.k);
    vec3 rgb = vec3(0.0);
    for (int m = 0; m < 3; ++m) {
        rgb += b[m] * vec3(colors[3 * ids[m]], colors[3 * ids[m] + 1], colors[3 * ids[m] + 2]);
    }
    out_color = vec4(rgb, 1.0);
    out_normal = vec4(hit_normal(hit), 0.0);
}
