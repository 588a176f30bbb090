#version 430
// Depth and the grey value of observed surface, two floats per pixel: what camera tracking aligns a frame
// to (heightfusion/tracking/tracker.py, Tracker.map_view). The grey value is the hit's exact barycentric
// mix of its vertices' grey values (as shaders/fragments.frag mixes colours); a vertex never observed has
// a negative one, and a hit on a triangle with such a vertex has none (NaN).
#include "triangle_hit.glsl"

layout(std430, binding = 2) readonly buffer Gray { float gray[]; };

layout(location = 0) out vec2 out_depth_gray;  // depth, grey in [0, 1] or NaN

void main() {
    TriangleHit hit = triangle_hit();
    vec3 b;
    ivec3 ids;
    hit_vertices(hit, b, ids);
    vec3 g = vec3(gray[ids.x], gray[ids.y], gray[ids.z]);
    float value = any(lessThan(g, vec3(0.0))) ? uintBitsToFloat(0x7fc00000u) : dot(b, g);
    out_depth_gray = vec2(hit.depth, value);
}
