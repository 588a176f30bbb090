#version 430
// Height-map mesh vertex stage. Positions come from the grid index and the heights buffer, so a
// height update between Gauss-Newton iterations is one buffer upload, not a mesh rebuild. No
// varyings: on a software rasterizer (llvmpipe) per-triangle setup of interpolants costs more than
// recomputing the hit per pixel, so the fragment stage intersects its ray with the triangle's plane.
// Positions are in the map-local frame (world minus the grid origin) to keep float32 precision.

layout(std430, binding = 0) readonly buffer Heights { float heights[]; };

uniform int nx;               // vertices per row
uniform float cell_size;      // metres
uniform mat4 clip_from_map;   // map-local -> GL clip space (see render/projection.py)

void main() {
    int i = int((float(gl_VertexID) + 0.5) / float(nx));  // no integer division: see triangle_hit.glsl
    int j = gl_VertexID - i * nx;
    gl_Position = clip_from_map * vec4(float(j) * cell_size, float(i) * cell_size, heights[gl_VertexID], 1.0);
}
