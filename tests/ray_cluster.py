"""Tests start Ray heads through the same code `raylens up` uses; see raylens.stack.ray_head."""

from raylens.stack.ray_head import (  # noqa: F401 - re-exported for the tests
    DEFAULT_OBJECT_STORE_BYTES,
    MARKER_VARIABLE,
    RayHead,
    RayPorts,
    running_ray_head,
    short_temp_dir,
)
