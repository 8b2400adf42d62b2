"""Hello world with only the standard library: a threading WSGI server on [::]:$PORT."""

import os
import socket
import socketserver
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer


def app(environ, start_response):
    greeting = os.environ.get("GREETING", "Hello")
    body = f"{greeting} from python-hello!\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]


class Server(socketserver.ThreadingMixIn, WSGIServer):
    """Dual-stack, threaded (a half-open health check must not block others), and without
    the reverse-DNS lookup HTTPServer.server_bind does via socket.getfqdn()."""

    address_family = socket.AF_INET6
    daemon_threads = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "localhost", self.server_address[1]
        self.setup_environ()


class QuietHandler(WSGIRequestHandler):
    def address_string(self):
        return self.client_address[0]


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "5000"))
    with Server(("::", port), QuietHandler) as server:
        server.set_app(app)
        print(f"listening on [::]:{port}", flush=True)
        server.serve_forever()
