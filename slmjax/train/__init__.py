"""slmjax.train: mesh and sharding rules, optimizer and schedule, the jitted sharded train step,
FLOPs/MFU, config validation and the `slmjax-train` command."""
