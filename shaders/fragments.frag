#version 430
// Full fragments in one pass, written so the CPU only takes views of what it reads back.
#include "triangle_hit.glsl"

layout(std430, binding = 1) readonly buffer Colors { float colors[]; };  // rgb per vertex

uniform float depth_scale;  // 1 / far

layout(location = 0) out vec4 out_depth_bary;   // depth, b0, b1, b2
layout(location = 1) out vec4 out_grad;         // d depth / d h0, h1, h2, den
layout(location = 2) out ivec4 out_ids;         // vertex ids v0, v1, v2, triangle id
layout(location = 3) out vec4 out_color;        // r, g, b, unused
layout(location = 4) out vec4 out_normal;       // world normal x, y, z, unused

vec3 vertex_color(int id) {
    return vec3(colors[3 * id], colors[3 * id + 1], colors[3 * id + 2]);
}

void main() {
    TriangleHit hit = triangle_hit();
    ivec3 ids = (hit.tri & 1) == 0 ? ivec3(hit.v, hit.v + 1, hit.v + nx + 1)
                                   : ivec3(hit.v, hit.v + nx + 1, hit.v + nx);
    out_depth_bary = vec4(hit.depth, hit.b);
    out_grad = vec4(hit.b / hit.den, hit.den);
    out_ids = ivec4(ids, hit.tri);
    out_color = vec4(hit.b.x * vertex_color(ids.x) + hit.b.y * vertex_color(ids.y) + hit.b.z * vertex_color(ids.z), 1.0);
    out_normal = vec4(normalize(vec3(-hit.g, 1.0)), 0.0);
    gl_FragDepth = hit.depth * depth_scale;
}
