"""`unicloud up`: one supervisor that owns Redis and every process of the Procfile."""
