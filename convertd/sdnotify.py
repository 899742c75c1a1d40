"""systemd's readiness protocol: tell the service manager when convertd is ready or stopping.

A no-op without a socket (Type=notify units set $NOTIFY_SOCKET, which config reads); a few lines
rather than a dependency.
"""

from __future__ import annotations

import socket


def notify(address: str | None, message: str) -> bool:
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:
        return False
    return True
