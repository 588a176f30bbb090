#version 430
// Coloured line segments (camera frustum, trajectory) in the map-local frame.
uniform mat4 clip_from_map;
in vec3 position;  // map-local, metres
in vec3 color;
out vec3 v_color;
void main() {
    v_color = color;
    gl_Position = clip_from_map * vec4(position, 1.0);
}
