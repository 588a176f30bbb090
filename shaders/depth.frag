#version 430
// Depth only: the baseline the full fragments pass is measured against.
#include "triangle_hit.glsl"

uniform float depth_scale;  // 1 / far: linear depth test, the same precision at every range

layout(location = 0) out float out_depth;

void main() {
    TriangleHit hit = triangle_hit();
    out_depth = hit.depth;
    gl_FragDepth = hit.depth * depth_scale;
}
