"""The endpoint areas shipped with the service; importing this registers each in ``ROUTERS``."""

from aigcguard.service.http.routers import check, health, page, similarity, watermark  # noqa: F401
