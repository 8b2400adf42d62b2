import os


def app(environ, start_response):
    body = f"{os.environ.get('GREETING', 'Hello')} from poetry-waitress!\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
