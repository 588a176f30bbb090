// Exact hit of the pixel's ray with the visible triangle; shared by the depth-only and full passes
// (included after #version). Inputs are the varyings of shaders/heightmap.vert. Which triangle of
// the cell is being drawn comes from the interpolated grid position, not gl_PrimitiveID, which
// sends llvmpipe's vertex stage down a slow path.
#include "mesh_triangles.glsl"

uniform mat3 map_from_cam;     // rotation of T_wc
uniform vec4 pixel_to_ray;     // (1/fx, 1/fy, cx, cy): OpenCV pixel -> camera ray with z = 1
uniform float depth_scale;     // 1 / far: linear depth test, the same precision at every range
uniform float cell_size;       // metres
uniform int nx;                // vertices per grid row
uniform vec3 cam_center;       // camera centre, map-local
uniform float max_depth;       // hits deeper than this (metres) are no fragment; +inf: none

flat in vec4 v_gradients;      // (dh/dx, dh/dy) of triangle k = 0, then k = 1
flat in vec4 v_plane;          // q of k = 0, q of k = 1, camera centre minus the cell's vertex (xy)
in vec2 v_grid;                // (column, row) grid coordinates of the rasterized point

struct TriangleHit {
    ivec2 cell;   // (j, i) of the cell
    int k;        // 0 or 1: which triangle of the cell (k = 0 covers s >= r)
    vec3 d;       // ray direction, map frame, camera-z component 1
    vec2 g;       // height gradient (dh/dx, dh/dy) of the triangle
    float den;    // d_z - g . d_xy: d depth / d h_k = b_k / den
    float depth;  // z-depth, metres
    vec2 sr;      // in-cell coordinates (s, r) of the hit, in cells
};

TriangleHit triangle_hit() {
    TriangleHit hit;
    // The cell's vertex lies exactly on the grid, so rounding recovers its index.
    hit.cell = ivec2(round((cam_center.xy - v_plane.zw) / cell_size));
    vec2 sr_raster = v_grid - vec2(hit.cell);
    hit.k = sr_raster.x >= sr_raster.y ? 0 : 1;
    // GL window coordinates have pixel centres at half-integers, OpenCV at integers.
    vec2 uv = gl_FragCoord.xy - 0.5;
    hit.d = map_from_cam * vec3((uv - pixel_to_ray.zw) * pixel_to_ray.xy, 1.0);
    hit.g = hit.k == 0 ? v_gradients.xy : v_gradients.zw;
    hit.den = hit.d.z - dot(hit.g, hit.d.xy);
    hit.depth = (hit.k == 0 ? v_plane.x : v_plane.y) / hit.den;
    if (hit.depth > max_depth) discard;
    hit.sr = (v_plane.zw + hit.depth * hit.d.xy) / cell_size;
    gl_FragDepth = hit.depth * depth_scale;
    return hit;
}

// Barycentric weights of the hit in its triangle and the triangle's vertex ids (shaders/mesh_triangles.glsl).
void hit_vertices(TriangleHit hit, out vec3 b, out ivec3 ids) {
    triangle_vertices(hit.cell.y * nx + hit.cell.x, hit.k, hit.sr, nx, b, ids);
}

// World normal of the hit's triangle.
vec3 hit_normal(TriangleHit hit) {
    return normalize(vec3(-hit.g, 1.0));
}
