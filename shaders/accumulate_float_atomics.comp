#version 430
// Normal equations of a depth frame, built where GL_NV_shader_atomic_float gives native float
// atomicAdd (NVIDIA, Mesa llvmpipe): one atomic instruction per term instead of a retry loop.
// See shaders/accumulate.glsl.
#extension GL_NV_shader_atomic_float : require
#include "float_add_native.glsl"
#include "accumulate.glsl"
