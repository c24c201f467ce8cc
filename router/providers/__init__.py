"""Where requests are served: the first-party engines and the hosted providers, each
behind the one backend interface (``switchyard.router.backend``)."""
