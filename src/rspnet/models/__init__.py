"""Networks: the search supernets and the derived (fixed-architecture) network with its heads."""
