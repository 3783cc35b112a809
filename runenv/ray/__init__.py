"""runenv on a Ray cluster: the engine (driver side), the node plugin, and the env translation."""
