"""``python -m nicupdate_server.dns CONTROL_FD UDP_FD TCP_FD``: the DNS process, started
by the server (:mod:`.supervise`), never by hand."""

from __future__ import annotations

import sys

from .process import main

if __name__ == "__main__":
    control, udp, tcp = (int(arg) for arg in sys.argv[1:4])
    main(control, udp, tcp)
