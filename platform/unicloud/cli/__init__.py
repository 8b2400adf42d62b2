"""The `unicloud` command line: a Heroku-style client that talks only to the REST API."""
