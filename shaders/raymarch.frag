#version 430
// Ray marching of the height field, one pixel per invocation of a full-screen pass: the GLSL twin of
// heightfusion/render/raymarch.py, whose docstring explains the walk. Grid frame: x along columns j
// and y along rows i in cells from vertex (0, 0), z in metres. The ray is clipped to the map's box,
// then walked one column of cells at a time along its major axis; in each column it can cross at
// most two cells (those under its entry and exit points), and both triangles of each are hit-tested
// exactly. The first column with a hit ends the walk.
// Triangulation as in heightfusion/heightmap.py: cell (i, j), v = i * nx + j, triangle id
// 2 * (i * (nx - 1) + j) + k,  k = 0: (v, v+1, v+nx+1) covers s >= r,  k = 1: (v, v+nx+1, v+nx).
// Outputs are laid out as shaders/fragments.frag's, so the same read-back gives Fragments.

#include "mesh_triangles.glsl"

layout(std430, binding = 0) readonly buffer Heights { float heights[]; };  // (ny, nx), metres
layout(std430, binding = 1) readonly buffer Colors { float colors[]; };    // (ny, nx, 3) rgb

uniform mat3 grid_from_cam;   // camera-frame ray with z = 1 -> grid frame (render/raymarch.py grid_frame)
uniform vec3 cam_grid;        // camera centre, grid frame
uniform vec4 pixel_to_ray;    // (1/fx, 1/fy, cx, cy): OpenCV pixel -> camera ray with z = 1
uniform vec3 box_lo;          // corners of the box the walk clips rays to (march_box)
uniform vec3 box_hi;
uniform float slack;          // in-triangle tolerance per cell of distance from the camera (edge_slack)
uniform float tiny;           // smallest ray component (raymarch.TINY): keeps 1 / d finite
uniform float cell_size;      // metres
uniform int nx;
uniform int ny;

layout(location = 0) out vec4 out_depth_bary;   // depth, b0, b1, b2
layout(location = 1) out vec4 out_grad;         // d depth / d h0, h1, h2, den
layout(location = 2) out ivec4 out_ids;         // vertex ids v0, v1, v2, triangle id
layout(location = 3) out vec4 out_color;        // r, g, b, 1
layout(location = 4) out vec4 out_normal;       // world normal x, y, z, 0

// Height differences per cell (G_x, G_y) of triangle k of the cell whose vertex (i, j) is v.
vec2 cell_slope(int v, int k) {
    return triangle_slope(k, heights[v], heights[v + 1], heights[v + nx], heights[v + nx + 1]);
}

// Ray parameter t where the ray meets the plane of triangle k of cell (i, j); in-cell coordinates
// (s, r) of that point, den = d_z - G . d_xy (render/raymarch.py _plane_hit) and the in-triangle
// tolerance there.
float plane_hit(ivec2 ij, int k, vec3 d, out vec2 sr, out float den, out float tolerance) {
    int v = ij.x * nx + ij.y;
    vec2 g = cell_slope(v, k);
    vec2 og = cam_grid.xy - vec2(ij.y, ij.x);  // camera minus vertex (i, j), cells
    tolerance = slack * (1.0 + abs(og.x) + abs(og.y));
    den = d.z - dot(g, d.xy);
    float t = (heights[v] - cam_grid.z + dot(g, og)) / den;
    sr = og + t * d.xy;
    return t;
}

// Nearest hit with t > 0 on the triangles of cell (i, j) that is nearer than best_t.
void test_cell(ivec2 ij, vec3 d, inout float best_t, inout int best_tri) {
    for (int k = 0; k < 2; ++k) {
        vec2 sr;
        float den, tol;
        float t = plane_hit(ij, k, d, sr, den, tol);
        vec2 lo_hi = k == 0 ? sr.yx : sr;  // k = 0: 0 <= r <= s <= 1; k = 1: 0 <= s <= r <= 1
        bool inside = lo_hi.x >= -tol && lo_hi.y <= 1.0 + tol && lo_hi.y - lo_hi.x >= -tol;
        if (den != 0.0 && inside && t > 0.0 && t < best_t) {
            best_t = t;
            best_tri = 2 * (ij.x * (nx - 1) + ij.y) + k;
        }
    }
}

// Triangle id of the first hit of the ray cam_grid + t d, -1 on a miss.
int march(vec3 d) {
    vec3 ta = (box_lo - cam_grid) / d, tb = (box_hi - cam_grid) / d;
    vec3 t_near = min(ta, tb), t_far = max(ta, tb);
    float t_start = max(max(t_near.x, t_near.y), max(t_near.z, 0.0));
    float t_end = min(min(t_far.x, t_far.y), t_far.z);
    float best_t = uintBitsToFloat(0x7f800000u);  // +inf
    int best_tri = -1;
    if (!(t_start <= t_end)) return best_tri;
    bool xmajor = abs(d.x) >= abs(d.y);
    // u: the major axis, walked column by column; w: the minor axis.
    float u_centre = xmajor ? cam_grid.x : cam_grid.y, w_centre = xmajor ? cam_grid.y : cam_grid.x;
    float u_dir = xmajor ? d.x : d.y, w_dir = xmajor ? d.y : d.x;
    int u_cells = xmajor ? nx - 1 : ny - 1, w_cells = xmajor ? ny - 1 : nx - 1;
    int step = u_dir < 0.0 ? -1 : 1;
    float back = u_dir < 0.0 ? 1.0 : 0.0;  // a column walked backwards is entered at its high side
    int col = clamp(int(floor(u_centre + t_start * u_dir)), 0, u_cells - 1);
    for (; col >= 0 && col < u_cells; col += step) {
        float t_in = max(t_start, (float(col) + back - u_centre) / u_dir);
        float t_out = min(t_end, (float(col) + 1.0 - back - u_centre) / u_dir);
        if (!(t_in <= t_out)) break;
        int w_in = clamp(int(floor(w_centre + t_in * w_dir)), 0, w_cells - 1);
        int w_out = clamp(int(floor(w_centre + t_out * w_dir)), 0, w_cells - 1);
        test_cell(xmajor ? ivec2(w_in, col) : ivec2(col, w_in), d, best_t, best_tri);
        if (w_out != w_in) test_cell(xmajor ? ivec2(w_out, col) : ivec2(col, w_out), d, best_t, best_tri);
        if (best_tri >= 0) break;
    }
    return best_tri;
}

void main() {
    // GL window coordinates have pixel centres at half-integers, OpenCV at integers.
    vec2 uv = gl_FragCoord.xy - 0.5;
    vec3 d = grid_from_cam * vec3((uv - pixel_to_ray.zw) * pixel_to_ray.xy, 1.0);
    d = mix(d, vec3(tiny) * mix(vec3(1.0), vec3(-1.0), lessThan(d, vec3(0.0))), lessThan(abs(d), vec3(tiny)));
    int tri = march(d);
    if (tri < 0) {
        vec4 nan4 = vec4(uintBitsToFloat(0x7fc00000u));
        out_depth_bary = nan4;
        out_grad = nan4;
        out_ids = ivec4(-1);
        out_color = nan4;
        out_normal = nan4;
        return;
    }
    int cell = tri >> 1, k = tri & 1;
    ivec2 ij = ivec2(cell / (nx - 1), cell % (nx - 1));
    vec2 sr;
    float den, tol;
    float depth = plane_hit(ij, k, d, sr, den, tol);
    int v = ij.x * nx + ij.y;
    vec3 b;
    ivec3 ids;
    triangle_vertices(v, k, sr, nx, b, ids);
    vec3 rgb = vec3(0.0);
    for (int m = 0; m < 3; ++m) {
        rgb += b[m] * vec3(colors[3 * ids[m]], colors[3 * ids[m] + 1], colors[3 * ids[m] + 2]);
    }
    out_depth_bary = vec4(depth, b);
    out_grad = vec4(b / den, den);
    out_ids = ivec4(ids, tri);
    out_color = vec4(rgb, 1.0);
    out_normal = vec4(normalize(vec3(-cell_slope(v, k) / cell_size, 1.0)), 0.0);
}
