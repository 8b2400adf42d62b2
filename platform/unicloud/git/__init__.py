"""The git receiver: `git push` over SSH (paramiko) and smart HTTP, both through dulwich.

The push only moves `main`/`master` after the build succeeded and the release deployed, so the
branch on the server always matches what runs (see `deploy.py`).
"""
