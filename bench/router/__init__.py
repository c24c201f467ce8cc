"""``switchyard bench router``: what the router adds to a request, measured against the
same upstream reached directly."""
