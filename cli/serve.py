"""`aigc serve`: the HTTP service (FastAPI on uvicorn)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import click

from aigcguard.cli.common import device_option


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Service config (TOML): api_keys, limits, watermark key, ledger, index, detector.",
)
@device_option
def serve_cmd(host, port, config_path, device):
    """Serve the checks over HTTP (OpenAPI docs at /docs). Without API keys in a config the
    service listens on loopback only; an empty or blank key is refused."""
    from aigcguard.service.http import ServiceConfig
    from aigcguard.service.http.server import run

    try:
        config = ServiceConfig.load(config_path) if config_path else ServiceConfig()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if not config.api_keys and not _loopback(host):
        raise click.ClickException(
            f"refusing to listen on {host} without API keys: set api_keys in the config, or "
            "use a loopback address"
        )
    run(config, host=host, port=port, device=device)
