// Microfacet BRDF (GGX, Smith with Schlick-GGX, Schlick Fresnel) term for term as
// heightfusion/render/brdf.py, where the model and the form of each term are explained; included
// after #version. tests/test_render_shaded.py holds the two equal.

const float PI = 3.14159265358979;

// sin2_h = |n x h|^2 rather than 1 - cos^2: no cancellation at the peak for small alpha.
float ggx_distribution(float n_dot_h, float sin2_h, float alpha) {
    float base = sin2_h + n_dot_h * n_dot_h * alpha * alpha;
    return alpha * alpha / (PI * base * base);
}

// G / (4 (n.l) (n.v)) with Schlick-GGX G1, k = alpha / 2: finite at grazing angles for alpha > 0.
float smith_visibility(float n_dot_l, float n_dot_v, float alpha) {
    float k = 0.5 * alpha;
    return 0.25 / ((n_dot_l * (1.0 - k) + k) * (n_dot_v * (1.0 - k) + k));
}

vec3 fresnel_schlick(float v_dot_h, vec3 f0) {
    float m = 1.0 - v_dot_h;
    float m2 = m * m;
    return f0 + (1.0 - f0) * (m2 * m2 * m);
}

// f(l, v) (n.l) for unit n, v, l and a roughness already clamped to [min_roughness, 1]; 0 unless
// the light and the camera are both above the surface.
vec3 brdf_cos(vec3 albedo, vec3 n, float roughness, vec3 f0, vec3 v, vec3 l) {
    float n_dot_l = dot(n, l);
    float n_dot_v = dot(n, v);
    if (n_dot_l <= 0.0 || n_dot_v <= 0.0) {
        return vec3(0.0);
    }
    float alpha = roughness * roughness;
    vec3 h = normalize(l + v);  // n.(l + v) > 0 here, so l + v is not zero
    float n_dot_h = max(dot(n, h), 0.0);
    float v_dot_h = clamp(dot(v, h), 0.0, 1.0);
    vec3 n_cross_h = cross(n, h);
    vec3 specular_lobe = ggx_distribution(n_dot_h, dot(n_cross_h, n_cross_h), alpha)
                       * smith_visibility(n_dot_l, n_dot_v, alpha) * fresnel_schlick(v_dot_h, f0);
    return (albedo / PI + specular_lobe) * n_dot_l;
}
