"""`python -m unicloud.scheduler` -- the scheduler Procfile process."""

from unicloud.scheduler.service import main

main()
