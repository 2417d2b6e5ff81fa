"""restores: spec Structs (``schema``) and the pure rules about them."""
