"""Bundled sample sequences, installed as the package ``heightfusion.bundled`` (data only)."""
