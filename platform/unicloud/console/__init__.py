"""A small server-rendered web console: log in with an API token, look at apps, follow logs."""
