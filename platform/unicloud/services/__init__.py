"""Business rules shared by the API, the git receiver, the workers and the scheduler."""


class ServiceError(Exception):
    """A user-facing failure: `status` maps onto HTTP, `message` is shown as is."""

    status = 400

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class Forbidden(ServiceError):
    status = 403
