"""Serves text escaped by MarkupSafe's C speedups, compiled from source in the build stack."""

import os
import socketserver
from wsgiref.simple_server import WSGIServer, make_server

import markupsafe
from markupsafe import _speedups  # the compiled extension; ImportError if the build skipped it


def app(environ, start_response):
    greeting = os.environ.get("GREETING", "Hello")
    body = (f"{markupsafe.escape(greeting + ' <from cext>')}\n"
            f"speedups: {_speedups.__file__}\n").encode()
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [body]


class Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def server_bind(self):  # skip HTTPServer's reverse-DNS lookup (socket.getfqdn)
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "localhost", self.server_address[1]
        self.setup_environ()


if __name__ == "__main__":
    make_server("0.0.0.0", int(os.environ.get("PORT", "5000")), app, server_class=Server).serve_forever()
