"""The container's health check: ``GET /healthz`` on the server in the same container.

Exit status 0 when it answers ``ok``; else 1, with one line saying why (the problems
``/healthz`` lists, or why it could not be reached), which ``podman inspect`` and
``docker inspect`` show in the health log. ``NICUPDATE_HEALTHCHECK_URL`` replaces the
address, for a server that listens on another port.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

URL = "http://127.0.0.1:8245/healthz"
TIMEOUT = 4.0  # below the HEALTHCHECK's --timeout


def check(url: str) -> str | None:
    """What is wrong with the server at ``url``, or None when it is healthy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    try:
        with opener.open(url, timeout=TIMEOUT) as response:
            response.read()
            return None
    except urllib.error.HTTPError as error:
        lines = error.read().decode(errors="replace").split("\n")
        return f"HTTP {error.code}: " + "; ".join(line for line in lines if line.strip())
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return f"cannot reach {url}: {reason}"


def main() -> int:
    problem = check(os.environ.get("NICUPDATE_HEALTHCHECK_URL") or URL)
    if problem is None:
        return 0
    print(problem)
    return 1


if __name__ == "__main__":
    sys.exit(main())
