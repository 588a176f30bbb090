#version 430
// Full fragments in one pass, written so that the CPU only takes views of what it reads back.
// Triangulation as in heightfusion/heightmap.py: cell (i, j), v = i * nx + j, triangle id
// 2 * (i * (nx - 1) + j) + k,  k = 0: (v, v+1, v+nx+1),  k = 1: (v, v+nx+1, v+nx).
#include "triangle_hit.glsl"

uniform int nx;

in vec3 v_color;  // perspective-correct interpolation weights are the barycentric weights

layout(location = 0) out vec4 out_depth_bary;   // depth, b0, b1, b2
layout(location = 1) out vec4 out_grad;         // d depth / d h0, h1, h2, den
layout(location = 2) out ivec4 out_ids;         // vertex ids v0, v1, v2, triangle id
layout(location = 3) out vec4 out_color;        // r, g, b, 1
layout(location = 4) out vec4 out_normal;       // world normal x, y, z, 0

void main() {
    TriangleHit hit = triangle_hit();
    ivec2 ji = hit.cell;
    int v = ji.y * nx + ji.x;
    vec2 sr = hit.sr;
    vec3 b;
    ivec3 ids;
    if (hit.k == 0) {
        b = vec3(1.0 - sr.x, sr.x - sr.y, sr.y);
        ids = ivec3(v, v + 1, v + nx + 1);
    } else {
        b = vec3(1.0 - sr.y, sr.x, sr.y - sr.x);
        ids = ivec3(v, v + nx + 1, v + nx);
    }
    out_depth_bary = vec4(hit.depth, b);
    out_grad = vec4(b / hit.den, hit.den);
    out_ids = ivec4(ids, 2 * (ji.y * (nx - 1) + ji.x) + hit.k);
    out_color = vec4(v_color, 1.0);
    out_normal = vec4(normalize(vec3(-hit.g, 1.0)), 0.0);
}
