#version 430
// Resets the target of shaders/triangle_ids.frag to "no surface": id -1, far depth (the fallback of
// glClear for that pass, as shaders/clear_fragments.frag is for the full pass).

layout(location = 0) out int out_triangle;

void main() {
    out_triangle = -1;
    gl_FragDepth = 1.0;
}
