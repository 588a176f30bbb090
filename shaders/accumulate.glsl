// Per-vertex normal equations of one depth frame, summed on the GPU: the same sums, in the same
// meaning, as heightfusion/normal_equations.py's accumulate (read its comments for the why of each
// rule). One invocation per pixel reads the targets of the fusion pass (shaders/fusion_fragments.frag)
// and the frame's inputs, and atomically adds its terms into the sums of its triangle's three
// vertices. Included after #version and one float_add_*.glsl, which declares the Sums buffer and
// add_float(index, value).
//
// The sums cover a window of the grid's vertices (the tiles the renderer drew, which hold every
// vertex a pixel sees), numbered row by row within it: what is cleared and read back then follows
// the view, not the map's size.
//
// Sums layout: plane s of window_vertices floats at s * window_vertices, s = 0 diagonal (sum w J_k^2),
// 1 g (sum w J_k r), 2 right, 3 down, 4 diag (edge terms by the edge's first vertex, see
// normal_equations.py), 5 |r| (added at the pixel's first vertex: spread like the other sums, so
// no address is shared by every pixel), 6..8 colour sums (sum w J_k^2 rgb). Pixel counts go to one
// set of counters per image row, for the same reason. No workgroup reduction: llvmpipe runs
// barrier() as a coroutine switch, which cost more than all the atomics together.

layout(local_size_x = 16, local_size_y = 16) in;

const uint DIAGONAL = 0u, G = 1u, RIGHT = 2u, DOWN = 3u, DIAG = 4u, ABS_RESIDUAL = 5u, COLOR = 6u;

layout(rgba32f, binding = 0) readonly uniform image2D depth_grad;    // depth, d depth / d h0, h1, h2
layout(rgba32i, binding = 1) readonly uniform iimage2D ids_normal;   // v0, v1, v2, bits of the normal's z

// Per pixel, row-major (H, W) as on the CPU; texel (u, v) of the images is pixel (u, v).
layout(std430, binding = 1) readonly buffer Depth { float depth[]; };         // NaN = no value
layout(std430, binding = 2) readonly buffer Sigma { float sigma[]; };
layout(std430, binding = 3) readonly buffer RayNorm { float ray_norm[]; };
layout(std430, binding = 4) readonly buffer Colors { float colors[]; };       // r, g, b per pixel
layout(std430, binding = 5) readonly buffer Information { float information[]; };  // per window vertex
layout(std430, binding = 6) buffer Counters { uint counters[]; };  // per row: used, unseen, grazing, gated

uniform ivec2 image_size;     // (W, H)
uniform int nx;               // vertices per grid row
uniform ivec2 window_origin;  // (column, row) of the window's first vertex
uniform int window_columns;
uniform uint window_vertices;
uniform float cos_min;
uniform float huber_k;        // in predicted sigmas; may be +inf
uniform float gate_k;         // in predicted sigmas; may be +inf
uniform bool use_information; // widen the gate by the map's own variance
uniform bool use_colors;

// By the exponent bits: compilers may fold isnan / isinf away under fast-math assumptions.
bool is_finite(float x) {
    return (floatBitsToUint(x) & 0x7f800000u) != 0x7f800000u;
}

const int NO_VALUE = -1, USED = 0, UNSEEN = 1, GRAZING = 2, GATED = 3;  // outcomes; counter index

// Index within the window of grid vertex v.
uint window_index(int v) {
    int i = v / nx;
    return uint((i - window_origin.y) * window_columns + (v - i * nx - window_origin.x));
}

// Adds the pixel's terms; returns what became of it.
int accumulate_pixel(ivec2 pixel) {
    uint p = uint(pixel.y * image_size.x + pixel.x);
    float measured = depth[p];
    if (!is_finite(measured)) return NO_VALUE;
    vec4 depth_J = imageLoad(depth_grad, pixel);
    float rendered = depth_J.x;
    if (!is_finite(rendered)) return UNSEEN;

    vec3 J = depth_J.yzw;
    ivec4 ids_nz = imageLoad(ids_normal, pixel);
    ivec3 ids = ids_nz.xyz;
    uvec3 v = uvec3(window_index(ids.x), window_index(ids.y), window_index(ids.z));
    float r = measured - rendered;
    float variance = sigma[p] * sigma[p];
    // cos(incidence) = n_z |den| / |d|, with sum_k J_k = 1 / den. Written so that NaN counts as grazing.
    float cos_incidence = intBitsToFloat(ids_nz.w) / (abs(J.x + J.y + J.z) * ray_norm[p]);
    if (!(cos_incidence >= cos_min)) return GRAZING;
    float predicted = variance;
    if (use_information) {
        vec3 terms = J * J / vec3(information[v.x], information[v.y], information[v.z]);
        predicted += terms.x + terms.y + terms.z;
    }
    float e = abs(r) / sqrt(predicted);
    if (!(e <= gate_k || r > 0.0)) return GATED;  // r > 0 (free space) is never gated
    // min(1, huber_k / e) without forming huber_k / e for e = 0 or huber_k = inf.
    float w = (e > huber_k ? huber_k / e : 1.0) / variance;

    vec3 wJ = w * J;
    vec3 diagonal = wJ * J;
    for (int k = 0; k < 3; ++k) {
        add_float(DIAGONAL * window_vertices + v[k], diagonal[k]);
        add_float(G * window_vertices + v[k], wJ[k] * r);
    }
    // Edge terms: triangle k = 0 is (v, v+1, v+nx+1), k = 1 is (v, v+nx+1, v+nx).
    bool k0 = ids.y == ids.x + 1;
    float p01 = wJ.x * J.y, p02 = wJ.x * J.z, p12 = wJ.y * J.z;
    add_float(RIGHT * window_vertices + (k0 ? v.x : v.z), k0 ? p01 : p12);
    add_float(DIAG * window_vertices + v.x, k0 ? p02 : p01);
    add_float(DOWN * window_vertices + (k0 ? v.y : v.x), k0 ? p12 : p02);
    if (use_colors) {
        vec3 rgb = vec3(colors[3u * p], colors[3u * p + 1u], colors[3u * p + 2u]);
        for (int k = 0; k < 3; ++k) {
            for (uint c = 0u; c < 3u; ++c) add_float((COLOR + c) * window_vertices + v[k], diagonal[k] * rgb[c]);
        }
    }
    add_float(ABS_RESIDUAL * window_vertices + v.x, abs(r));
    return USED;
}

void main() {
    ivec2 pixel = ivec2(gl_GlobalInvocationID.xy);
    if (any(greaterThanEqual(pixel, image_size))) return;
    int outcome = accumulate_pixel(pixel);
    if (outcome != NO_VALUE) atomicAdd(counters[4 * pixel.y + outcome], 1u);
}
