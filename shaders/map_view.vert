#version 430
// The height map as a mesh for display (viewer and live app): positions from the grid, one colour
// per vertex chosen on the CPU for the view mode (colour, height or uncertainty).
uniform mat4 clip_from_map;  // clip space <- map-local frame (world minus (origin, 0)), metres
uniform float cell_size;     // metres
uniform int nx;              // vertices per row

in float height;             // metres
in vec3 color;               // RGB in [0, 1]
in float observed;           // 1 where the vertex was observed, else 0

out vec3 v_position;         // map-local, for the face normal
out vec3 v_color;
out float v_observed;

void main() {
    vec3 p = vec3(float(gl_VertexID % nx) * cell_size, float(gl_VertexID / nx) * cell_size, height);
    v_position = p;
    v_color = color;
    v_observed = observed;
    gl_Position = clip_from_map * vec4(p, 1.0);
}
