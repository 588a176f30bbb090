#version 430
// What the sums of fusion read per pixel (shaders/accumulate.glsl), in two targets rather than the
// full pass's five: a third of the bytes written per fragment and cleared per pixel, and no colour
// varying. The values are those of shaders/fragments.frag.
#include "triangle_hit.glsl"

layout(location = 0) out vec4 out_depth_grad;   // depth, d depth / d h0, h1, h2
layout(location = 1) out ivec4 out_ids_normal;  // vertex ids v0, v1, v2, bits of the world normal's z

void main() {
    TriangleHit hit = triangle_hit();
    vec3 b;
    ivec3 ids;
    hit_vertices(hit, b, ids);
    out_depth_grad = vec4(hit.depth, b / hit.den);
    out_ids_normal = ivec4(ids, floatBitsToInt(hit_normal(hit).z));
}
