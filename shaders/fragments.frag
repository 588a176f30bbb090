#version 430
// Full fragments in one pass, written so that the CPU only takes views of what it reads back.
// Triangle id as in heightfusion/heightmap.py: 2 * (i * (nx - 1) + j) + k for triangle k of cell (i, j).
#include "triangle_hit.glsl"

in vec3 v_color;  // perspective-correct interpolation weights are the barycentric weights

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
    out_color = vec4(v_color, 1.0);
    out_normal = vec4(hit_normal(hit), 0.0);
}
