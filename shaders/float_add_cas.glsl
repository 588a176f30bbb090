// Sums of shaders/accumulate.glsl as float bits in uints, added by an atomicCompSwap loop: the
// portable float atomic. A pass fails only when another invocation's add landed first, so each pass
// of a set of contending invocations lets one through and the loop ends. It compares bits, so a NaN
// sum ends it too.
layout(std430, binding = 0) coherent buffer Sums { uint sums[]; };

void add_float(uint index, float value) {
    uint found = sums[index];
    uint expected;
    do {
        expected = found;
        found = atomicCompSwap(sums[index], expected, floatBitsToUint(uintBitsToFloat(expected) + value));
    } while (found != expected);
}
