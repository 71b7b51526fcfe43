"""The torch release the compiled core is built against (tch 0.24 pins libtorch 2.11.0)."""

REQUIRED_TORCH = "2.11.0"
