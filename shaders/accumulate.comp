#version 430
// Normal equations of a depth frame, portable build: float sums by compare-and-swap on their bits
// (core GL 4.3 has integer atomics only). See shaders/accumulate.glsl.
#include "float_add_cas.glsl"
#include "accumulate.glsl"
