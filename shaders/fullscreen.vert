#version 430
// One triangle covering the viewport, from gl_VertexID alone (draw 3 vertices, no buffers).
void main() {
    vec2 p = vec2(float((gl_VertexID & 1) << 2) - 1.0, float((gl_VertexID & 2) << 1) - 1.0);
    gl_Position = vec4(p, 1.0, 1.0);
}
