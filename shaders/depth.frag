#version 430
// Depth only: the baseline the full fragments pass is measured against.
#include "triangle_hit.glsl"

layout(location = 0) out float out_depth;

void main() {
    out_depth = triangle_hit().depth;
}
