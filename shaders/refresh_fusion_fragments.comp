#version 430
// The fusion pass's targets (shaders/fusion_fragments.frag) again after the heights moved a little,
// without rasterizing: each pixel's ray walks the triangles along its path, starting from the one it
// saw at the last draw, to where it crosses the surface from above: across the edge it leaves a
// triangle by while it is still above the triangle's plane, back across the edge it entered by while
// it is below. Where the heights moved by little, that is the triangle the rasterizer finds; a ray
// that now passes over a ridge walks on to what lies behind it. A pixel becomes "no surface" (its
// measurement is then not used, never used wrongly) where the walk leaves the drawn window, goes
// behind the camera or beyond max_depth, or takes more than MAX_STEPS; those that end walking back
// towards the camera (the surface rose further than the walk follows) are counted in Lost, and the
// caller rasterizes again when they are many (heightfusion/render/gl.py). A surface that rose in
// front of a ray's crossing, away from it, is not seen.
// Triangulation and hit as in shaders/triangle_hit.glsl (shaders/mesh_triangles.glsl).
#include "mesh_triangles.glsl"

layout(local_size_x = 16, local_size_y = 16) in;

layout(rgba32f, binding = 0) uniform image2D depth_grad;   // depth, d depth / d h0, h1, h2
layout(rgba32i, binding = 1) uniform iimage2D ids_normal;  // v0, v1, v2, bits of the normal's z
layout(std430, binding = 0) readonly buffer Heights { float heights[]; };  // (ny, nx), metres
layout(std430, binding = 1) buffer Lost { uint lost; };  // walks that ended below the surface

uniform ivec2 image_size;     // (W, H)
uniform mat3 map_from_cam;    // rotation of T_wc
uniform vec4 pixel_to_ray;    // (1/fx, 1/fy, cx, cy): OpenCV pixel -> camera ray with z = 1
uniform vec3 cam_center;      // camera centre, map-local
uniform float cell_size;      // metres
uniform int nx;               // vertices per grid row
uniform ivec4 cells;          // (j0, i0, j1, i1): the drawn window's cells, j0 <= j < j1, i0 <= i < i1
uniform float max_depth;      // hits deeper than this (metres) are no surface

const int MAX_STEPS = 32;

void no_surface(ivec2 pixel) {
    imageStore(depth_grad, pixel, vec4(uintBitsToFloat(0x7fc00000u)));
    imageStore(ids_normal, pixel, ivec4(-1));
}

// The three edges of triangle k as constraints a + b t >= 0 on the ray's in-cell coordinates
// (s, r) = p + t v. k = 0 (0 <= r <= s <= 1): r >= 0 (below), 1 - s >= 0 (right), s - r >= 0 (the
// diagonal); k = 1 mirrored (left, above, the diagonal).
void edges(int k, vec2 p, vec2 v, out vec3 a, out vec3 b) {
    if (k == 0) {
        a = vec3(p.y, 1.0 - p.x, p.x - p.y);
        b = vec3(v.y, -v.x, v.x - v.y);
    } else {
        a = vec3(p.x, 1.0 - p.y, p.y - p.x);
        b = vec3(v.x, -v.y, v.y - v.x);
    }
}

// The cell across edge e of triangle k (edges()), relative to its own: below (0, -1) or right (1, 0) for
// k = 0, left (-1, 0) or above (0, 1) for k = 1, the same cell across the diagonal (e = 2). No arrays:
// llvmpipe keeps dynamically indexed ones in memory (a refresh took a tenth longer with them).
ivec2 across(int k, int e) {
    if (e == 2) return ivec2(0);
    return k == 0 ? (e == 0 ? ivec2(0, -1) : ivec2(1, 0)) : (e == 0 ? ivec2(-1, 0) : ivec2(0, 1));
}

// The largest of t (the first on ties) and its index.
void first_max(vec3 t, out float value, out int index) {
    index = t.x >= t.y && t.x >= t.z ? 0 : (t.y >= t.z ? 1 : 2);
    value = max(max(t.x, t.y), t.z);
}

void main() {
    ivec2 pixel = ivec2(gl_GlobalInvocationID.xy);
    if (any(greaterThanEqual(pixel, image_size))) return;
    ivec4 seen = imageLoad(ids_normal, pixel);
    if (seen.x < 0) return;  // no surface at the draw: stays so
    ivec2 cell = ivec2(seen.x % nx, seen.x / nx);  // (j, i)
    int k = seen.y == seen.x + 1 ? 0 : 1;
    ivec3 came_from = ivec3(-1);  // (j, i, k) of the previous triangle of the walk
    vec3 d = map_from_cam * vec3((vec2(pixel) - pixel_to_ray.zw) * pixel_to_ray.xy, 1.0);
    vec2 v = d.xy / cell_size;  // the ray's in-cell velocity per metre of depth
    bool backwards = false;  // the last step went towards the camera: the surface rose in front of the hit
    for (int step = 0; step <= MAX_STEPS; ++step) {
        if (any(lessThan(cell, cells.xy)) || any(greaterThanEqual(cell, cells.zw))) break;
        int w = cell.y * nx + cell.x;
        float h00 = heights[w];
        vec2 g = triangle_slope(k, h00, heights[w + 1], heights[w + nx], heights[w + nx + 1]) / cell_size;
        vec2 offset = cam_center.xy - vec2(cell) * cell_size;  // camera minus vertex (i, j), metres
        // Height of the ray above the triangle's plane at depth t: t den - q.
        float den = d.z - dot(g, d.xy);
        float q = h00 - cam_center.z + dot(g, offset);
        // The stretch [t_in, t_out] of the ray over the triangle, and the edges it enters and leaves by.
        vec3 a, b;
        edges(k, offset / cell_size, v, a, b);
        vec3 t = -a / b;
        float t_in, t_out;
        int enter, leave;
        first_max(mix(vec3(-1e30), t, greaterThan(b, vec3(0.0))), t_in, enter);
        first_max(mix(vec3(-1e30), -t, lessThan(b, vec3(0.0))), t_out, leave);
        t_out = -t_out;
        bool enters = t_in > -1e30, leaves = t_out < 1e30;
        int move;  // the edge to cross next; -1: the hit is on this triangle
        if (enters && t_in * den - q < 0.0) move = enter;          // below it on entry: the crossing lies before
        else if (leaves && t_out * den - q > 0.0) move = leave;    // above it on leaving: the crossing lies beyond
        else move = -1;
        ivec3 next = move < 0 ? ivec3(-1) : ivec3(cell + across(k, move), 1 - k);
        if (move < 0 || next == came_from) {  // back to where it came from: the crossing is on their shared edge
            float depth = den != 0.0 ? clamp(q / den, t_in, t_out) : max(t_in, 0.0);
            if (!(depth > 0.0) || depth > max_depth) break;
            vec2 sr = (offset + depth * d.xy) / cell_size;
            vec3 bary;
            ivec3 ids;
            triangle_vertices(w, k, sr, nx, bary, ids);
            imageStore(depth_grad, pixel, vec4(depth, bary / den));
            imageStore(ids_normal, pixel, ivec4(ids, floatBitsToInt(normalize(vec3(-g, 1.0)).z)));
            return;
        }
        backwards = enters && move == enter;
        if (backwards && t_in <= 0.0) break;  // the crossing would lie behind the camera
        came_from = ivec3(cell, k);
        cell = next.xy;
        k = next.z;
    }
    no_surface(pixel);
    // A ray that walked on past a ridge towards what lies behind it (further than the walk goes) shows
    // what the last draw could not; one still below the surface when the walk ends means the surface
    // rose further than the walk follows: those are counted.
    if (backwards) atomicAdd(lost, 1u);
}
