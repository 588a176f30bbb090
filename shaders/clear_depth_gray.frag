#version 430
// Resets the target of shaders/depth_gray.frag to "no surface": NaN depth and grey, far depth (the
// fallback of glClear, as shaders/clear_fragments.frag is for the full pass).

layout(location = 0) out vec2 out_depth_gray;

void main() {
    out_depth_gray = vec2(uintBitsToFloat(0x7fc00000u));
    gl_FragDepth = 1.0;
}
