#version 430
// Height gradients of both triangles of every cell, one invocation per vertex, written to the
// vertex attribute buffer that shaders/heightmap.vert reads. Run after each heights upload: the
// per-vertex work then happens once, in parallel, instead of in the (serial, on llvmpipe) vertex stage.
// Triangulation as in heightfusion/heightmap.py: cell (i, j), v = i * nx + j,
//   k = 0: (v, v+1, v+nx+1),  k = 1: (v, v+nx+1, v+nx).

layout(local_size_x = 128) in;

layout(std430, binding = 0) readonly buffer Heights { float heights[]; };
layout(std430, binding = 2) writeonly buffer Gradients { vec4 gradients[]; };  // per vertex (i, j)

uniform int nx;
uniform int ny;
uniform float cell_size;  // metres

void main() {
    int v = int(gl_GlobalInvocationID.x);
    if (v >= nx * ny) return;
    int i = v / nx;
    int j = v - i * nx;
    if (i == ny - 1 || j == nx - 1) {  // vertices on the last row or column start no cell
        gradients[v] = vec4(0.0);
        return;
    }
    float h00 = heights[v], h01 = heights[v + 1], h10 = heights[v + nx], h11 = heights[v + nx + 1];
    gradients[v] = vec4(h01 - h00, h11 - h01, h11 - h10, h10 - h00) / cell_size;
}
