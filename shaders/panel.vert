#version 430
// A textured quad filling the viewport, from gl_VertexID alone (draw a 4-vertex triangle strip).
// Texture row 0 is the image's top row, so v runs downwards.
out vec2 v_uv;
void main() {
    vec2 corner = vec2(float(gl_VertexID & 1), float(gl_VertexID >> 1));
    v_uv = vec2(corner.x, 1.0 - corner.y);
    gl_Position = vec4(corner * 2.0 - 1.0, 0.0, 1.0);
}
