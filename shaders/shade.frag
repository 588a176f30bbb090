#version 430
// Full-screen shading pass: one surface point per pixel, described by per-pixel maps that
// heightfusion/render/shaded.py uploads as textures (texel (u, v) = pixel (u, v), OpenCV order),
// lit by the lights in a storage buffer. The torch twin is heightfusion.render.brdf.shade.
#include "brdf.glsl"

uniform sampler2D albedo_map;     // rgb diffuse albedo
uniform sampler2D normal_map;     // xyz surface normal, any length
uniform sampler2D roughness_map;  // perceptual roughness in r
uniform sampler2D specular_map;   // rgb specular colour F0
uniform sampler2D view_dir_map;   // xyz from the surface point to the camera, any length
uniform sampler2D position_map;   // xyz surface point in the lights' frame, metres
uniform float min_roughness;
uniform float min_light_distance;
uniform int num_lights;

// Two vec4s per light: (unit direction towards it, 0) or (position, 1); then (color * intensity, 0).
layout(std430, binding = 0) readonly buffer Lights { vec4 lights[]; };

layout(location = 0) out vec4 out_rgb;

void main() {
    ivec2 texel = ivec2(gl_FragCoord.xy);
    vec3 albedo = texelFetch(albedo_map, texel, 0).rgb;
    vec3 n = normalize(texelFetch(normal_map, texel, 0).xyz);
    float roughness = clamp(texelFetch(roughness_map, texel, 0).r, min_roughness, 1.0);
    vec3 f0 = texelFetch(specular_map, texel, 0).rgb;
    vec3 v = normalize(texelFetch(view_dir_map, texel, 0).xyz);
    vec3 position = texelFetch(position_map, texel, 0).xyz;

    vec3 rgb = vec3(0.0);
    for (int i = 0; i < num_lights; ++i) {
        vec4 where = lights[2 * i];
        vec3 strength = lights[2 * i + 1].rgb;
        vec3 l = where.xyz;
        vec3 irradiance = strength;
        if (where.w > 0.5) {  // point light: direction and 1 / r^2 fall-off from this surface point
            vec3 to_light = where.xyz - position;
            float dist2 = max(dot(to_light, to_light), min_light_distance * min_light_distance);
            l = to_light * inversesqrt(dist2);
            irradiance = strength / dist2;
        }
        rgb += brdf_cos(albedo, n, roughness, f0, v, l) * irradiance;
    }
    out_rgb = vec4(rgb, 1.0);
}
