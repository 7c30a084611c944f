"""A tiny TCP echo server for the network-harness tests: `python -P netns_echo.py HOST PORT`.

Prints `ready` once it listens; echoes every byte back on every connection until killed.
"""

from __future__ import annotations

import socket
import sys
import threading


def echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


def main(host: str, port: int) -> None:
    server = socket.create_server((host, port), reuse_port=False)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=echo, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
