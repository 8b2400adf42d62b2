"""The scheduler: converges running instances to each app's release × formation, one idempotent step at a time."""
