"""`python -m unicloud.router` -- the router Procfile process."""

from unicloud.router.service import main

main()
