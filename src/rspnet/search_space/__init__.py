"""Search space: operations, cells (MixedOp, RSP), trellis pieces, path attention."""
