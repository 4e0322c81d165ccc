"""kernel_ext."""
