"""The streaming service: which queries run (``plan``), the one-pass micro-batch across the layers
(``fused``, the only module that knows it), the queries' lifecycle (``service.run_stream``), the
checkpoint-versus-tables check with ``xray recover`` (``consistency``) and what raises alerts (``alerting``).
"""

__all__ = ["alerting", "consistency", "fused", "plan", "service"]
