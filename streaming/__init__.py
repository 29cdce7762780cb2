"""The streaming service: landing files → bronze → silver → gold, exactly once.

Packages, lowest layer first (each imports only from those below it; `lint-imports` checks it):
``core`` → ``landing`` → ``lakehouse`` → ``quality`` / ``imaging`` → ``bronze`` / ``silver`` / ``gold`` / ``ingest``
→ ``pipeline`` / ``ops`` → (``batch``) → ``cli``. See ARCHITECTURE.md.
"""

__all__ = ["core", "landing", "lakehouse", "quality", "imaging", "bronze", "silver", "gold", "ingest", "pipeline", "ops", "cli"]
