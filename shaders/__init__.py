"""GLSL sources of heightfusion, installed as the package ``heightfusion.shaders``."""
