#version 430
// Height-map mesh vertex stage.
//
// Heights are uploaded as one buffer per render (no mesh rebuild); shaders/cell_gradients.comp turns
// them into each cell's two triangle gradients. Positions are in the map-local frame (world minus
// the grid origin) to keep float32 precision.
//
// Per-triangle data travels as flat varyings from the provoking (last) vertex, which the index
// buffer makes the cell's first vertex (i, j) for both triangles of cell (i, j) (see render/gl.py).
// Software rasterizers (llvmpipe) pay per varying slot per triangle and run this stage serially,
// so it reads plain attributes and writes two packed vec4s (plus colour for the full pass).

in vec2 in_xy;          // map-local vertex position, metres
in float in_height;     // metres
in vec4 in_gradients;   // (dh/dx, dh/dy) of triangle k = 0, then k = 1, of the cell starting here
in vec3 in_color;

uniform mat4 clip_from_map;   // map-local -> GL clip space (see render/projection.py)
uniform vec3 cam_center;      // camera centre, map-local
uniform float cell_size;      // metres

flat out vec4 v_gradients;    // in_gradients, passed on
flat out vec4 v_plane;        // q of k = 0, q of k = 1, camera centre minus this vertex (xy)
out vec2 v_grid;              // (column, row) grid coordinates: tells the triangles of a cell apart
out vec3 v_color;

void main() {
    // Plane of a triangle through this vertex: z = h + g . (xy - p.xy). A ray c + t d (d with camera-z
    // component 1) meets it at depth t = q / (d_z - g . d_xy) with q = h + g . (c.xy - p.xy) - c.z.
    vec2 offset = cam_center.xy - in_xy;
    float dz = in_height - cam_center.z;
    v_gradients = in_gradients;
    v_plane = vec4(dz + dot(in_gradients.xy, offset), dz + dot(in_gradients.zw, offset), offset);
    v_grid = in_xy / cell_size;
    v_color = in_color;
    gl_Position = clip_from_map * vec4(in_xy, in_height, 1.0);
}
