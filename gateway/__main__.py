"""``python -m gateway``: the webhook gateway on GATEWAY_PORT (GATEWAY_WORKERS processes)."""

from __future__ import annotations

from gateway.workers import main

if __name__ == "__main__":
    main()
