// Sums of shaders/accumulate.glsl as floats, added by GL_NV_shader_atomic_float's atomicAdd.
layout(std430, binding = 0) buffer Sums { float sums[]; };

void add_float(uint index, float value) {
    atomicAdd(sums[index], value);
}
