"""The bi-level architecture step of DARTS (`bilevel.Architect`) and its second-order gradient (`unrolled`): plain torch, no Lightning."""
