"""Operating the service: ``xray status`` (``status``).
"""

__all__ = ["status"]
