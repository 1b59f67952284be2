"""Typed application keys."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from sandbox.config import SandboxConfig
from sandbox.state import SandboxState

CONFIG_KEY = web.AppKey("sandbox_config", SandboxConfig)
STATE_KEY = web.AppKey("sandbox_state", SandboxState)
HTTP_KEY = web.AppKey("sandbox_http", aiohttp.ClientSession)
