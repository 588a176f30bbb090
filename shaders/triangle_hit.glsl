// Exact hit of a pixel's ray with the visible triangle, shared by the depth-only and full passes.
// Included after `#version`; needs the Heights buffer at binding 0.
// Triangulation as in heightfusion/heightmap.py: triangle 2 * (i * (nx - 1) + j) + k of cell (i, j),
// vertex v = i * nx + j,  k = 0: (v, v+1, v+nx+1) for s >= r,  k = 1: (v, v+nx+1, v+nx) for r >= s.
// Triangles are drawn in id order, so gl_PrimitiveID is the triangle id.

layout(std430, binding = 0) readonly buffer Heights { float heights[]; };

uniform int nx;
uniform float cell_size;         // metres
uniform vec3 cam_center;         // camera centre, map-local frame
uniform mat3 map_from_cam;       // rotation of T_wc
uniform vec4 pixel_to_ray;       // (1/fx, 1/fy, cx, cy): OpenCV pixel -> camera ray with z = 1

// i = index / row_length without integer division, which software rasterizers run one lane at a
// time; exact while index < 2^22 (the +0.5 keeps the float quotient away from integers).
int grid_row(int index, int row_length) {
    return int((float(index) + 0.5) / float(row_length));
}

struct TriangleHit {
    int tri;      // triangle id
    int v;        // id of vertex (i, j) of the triangle's cell
    float depth;  // z-depth, metres
    vec3 b;       // barycentric weights in the triangle's vertex order
    vec2 g;       // height gradient (dh/dx, dh/dy) of the triangle's plane
    float den;    // d_z - g . d_xy: d depth / d h_k = b_k / den
};

TriangleHit triangle_hit() {
    TriangleHit hit;
    hit.tri = gl_PrimitiveID;
    int cell = hit.tri >> 1;
    int i = grid_row(cell, nx - 1);
    int j = cell - i * (nx - 1);
    hit.v = i * nx + j;
    float h00 = heights[hit.v];
    float h11 = heights[hit.v + nx + 1];
    bool upper = (hit.tri & 1) == 1;
    float h_side = heights[upper ? hit.v + nx : hit.v + 1];
    hit.g = (upper ? vec2(h11 - h_side, h_side - h00) : vec2(h_side - h00, h11 - h_side)) / cell_size;

    // GL window coordinates have pixel centres at half-integers, OpenCV at integers.
    vec2 uv = gl_FragCoord.xy - 0.5;
    vec3 d = map_from_cam * vec3((uv - pixel_to_ray.zw) * pixel_to_ray.xy, 1.0);
    vec2 corner = vec2(float(j), float(i)) * cell_size;
    hit.den = d.z - dot(hit.g, d.xy);
    hit.depth = (h00 + dot(hit.g, cam_center.xy - corner) - cam_center.z) / hit.den;

    vec2 sr = (cam_center.xy + hit.depth * d.xy - corner) / cell_size;
    hit.b = upper ? vec3(1.0 - sr.y, sr.x, sr.y - sr.x) : vec3(1.0 - sr.x, sr.x - sr.y, sr.y);
    return hit;
}
