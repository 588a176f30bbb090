#version 430
// Resets every render target to "no surface": NaN in float targets, -1 in the id target, far depth.
// A draw rather than glClear, because glClear's colour is undefined for integer targets.

layout(location = 0) out vec4 out_depth_bary;
layout(location = 1) out vec4 out_grad;
layout(location = 2) out ivec4 out_ids;
layout(location = 3) out vec4 out_color;
layout(location = 4) out vec4 out_normal;

void main() {
    vec4 nan4 = vec4(uintBitsToFloat(0x7fc00000u));
    out_depth_bary = nan4;
    out_grad = nan4;
    out_ids = ivec4(-1);
    out_color = nan4;
    out_normal = nan4;
    gl_FragDepth = 1.0;
}
