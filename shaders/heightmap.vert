#version 430
// Height-map mesh vertex stage.
//
// Heights are uploaded as one buffer per render (no mesh rebuild). Positions are in the map-local
// frame (world minus the grid origin) to keep float32 precision.
//
// Per-triangle data travels as flat varyings from the provoking (last) vertex, which the index
// buffer makes the cell's first vertex (i, j) for both triangles of cell (i, j) (see render/gl.py).
// The cell's other three heights come in as attributes too: the heights buffer is bound again at
// offsets of 1, nx and nx + 1 vertices, so each vertex derives its cell's two triangle gradients from
// plain attribute fetches (a compute pass for them cost more on llvmpipe than the whole vertex stage).
// Software rasterizers (llvmpipe) pay per varying slot per triangle and run this stage serially,
// so it writes two packed vec4s.
// Triangulation as in heightfusion/heightmap.py: cell (i, j), v = i * nx + j,
//   k = 0: (v, v+1, v+nx+1),  k = 1: (v, v+nx+1, v+nx).

in vec2 in_xy;          // map-local vertex position, metres
in float in_height;     // metres: vertex (i, j)
in float in_right;      // vertex (i, j + 1); meaningless where j = nx - 1 (no cell starts there)
in float in_below;      // vertex (i + 1, j)
in float in_diagonal;   // vertex (i + 1, j + 1)

uniform mat4 clip_from_map;   // map-local -> GL clip space (see render/projection.py)
uniform vec3 cam_center;      // camera centre, map-local
uniform float cell_size;      // metres

flat out vec4 v_gradients;    // (dh/dx, dh/dy) of triangle k = 0, then k = 1, of the cell starting here
flat out vec4 v_plane;        // q of k = 0, q of k = 1, camera centre minus this vertex (xy)
out vec2 v_grid;              // (column, row) grid coordinates: tells the triangles of a cell apart

void main() {
    vec4 gradients = vec4(in_right - in_height, in_diagonal - in_right, in_diagonal - in_below, in_below - in_height)
                     / cell_size;
    // Plane of a triangle through this vertex: z = h + g . (xy - p.xy). A ray c + t d (d with camera-z
    // component 1) meets it at depth t = q / (d_z - g . d_xy) with q = h + g . (c.xy - p.xy) - c.z.
    vec2 offset = cam_center.xy - in_xy;
    float dz = in_height - cam_center.z;
    v_gradients = gradients;
    v_plane = vec4(dz + dot(gradients.xy, offset), dz + dot(gradients.zw, offset), offset);
    v_grid = in_xy / cell_size;
    gl_Position = clip_from_map * vec4(in_xy, in_height, 1.0);
}
