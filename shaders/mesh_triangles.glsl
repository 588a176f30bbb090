// Triangle k of the height-map cell whose vertex (i, j) is v = i * nx + j, as heightfusion/heightmap.py
// triangulates it: k = 0: (v, v+1, v+nx+1) covers s >= r,  k = 1: (v, v+nx+1, v+nx), with (s, r) the
// in-cell coordinates (cells along columns and rows from vertex (i, j)). Included after #version by the
// passes that intersect the mesh: shaders/triangle_hit.glsl, raymarch.frag, refresh_fusion_fragments.comp.

// Barycentric weights of the in-cell point sr on triangle k, and the triangle's vertex ids, both in the
// triangulation's vertex order.
void triangle_vertices(int v, int k, vec2 sr, int nx, out vec3 b, out ivec3 ids) {
    if (k == 0) {
        b = vec3(1.0 - sr.x, sr.x - sr.y, sr.y);
        ids = ivec3(v, v + 1, v + nx + 1);
    } else {
        b = vec3(1.0 - sr.y, sr.x, sr.y - sr.x);
        ids = ivec3(v, v + nx + 1, v + nx);
    }
}

// Height differences per cell (G_x, G_y) of triangle k, from the cell's heights at vertices (i, j),
// (i, j + 1), (i + 1, j) and (i + 1, j + 1).
vec2 triangle_slope(int k, float h00, float h01, float h10, float h11) {
    return k == 0 ? vec2(h01 - h00, h11 - h01) : vec2(h11 - h10, h10 - h00);
}
