#version 430
// Lambert shading of the display mesh with a face normal from screen-space derivatives (flat
// shading shows the grid's facets, which is what a user inspecting a map wants to see).
uniform vec3 light_direction;  // towards the light, map-local frame, unit
uniform bool hide_unobserved;

in vec3 v_position;
in vec3 v_color;
in float v_observed;

out vec4 frag_color;

const float AMBIENT = 0.45;

void main() {
    // A triangle with an unobserved corner interpolates below 1 somewhere: cut it where it drops.
    if (hide_unobserved && v_observed < 0.5) discard;
    vec3 n = normalize(cross(dFdx(v_position), dFdy(v_position)));
    if (n.z < 0.0) n = -n;  // the upper side, whichever way the view's y axis runs
    float lambert = max(dot(n, light_direction), 0.0);
    frag_color = vec4(v_color * (AMBIENT + (1.0 - AMBIENT) * lambert), 1.0);
}
