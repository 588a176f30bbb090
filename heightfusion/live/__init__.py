"""The live mapping app (``heightfusion live``): a camera, video or dataset fused as it plays, in a window."""
