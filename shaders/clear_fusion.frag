#version 430
// Resets the targets of shaders/fusion_fragments.frag to "no surface": NaN, -1 ids, far depth (the
// fallback of shaders/clear_fragments.frag for that pass).

layout(location = 0) out vec4 out_depth_grad;
layout(location = 1) out ivec4 out_ids_normal;

void main() {
    out_depth_grad = vec4(uintBitsToFloat(0x7fc00000u));
    out_ids_normal = ivec4(-1);
    gl_FragDepth = 1.0;
}
