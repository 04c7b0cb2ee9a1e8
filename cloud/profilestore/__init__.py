"""The reference cloud profile store (docs/profile-store.md): the sync contract served over HTTP for real.

``server.serve(url, admin_token=...)`` runs it; ``server.create_app`` and ``storage.open_storage`` are the
pieces. Storage is SQLite (one process) or PostgreSQL (stateless replicas on one database). Its own
distribution (cloud/pyproject.toml, the ``profile-store`` command): it shares only ``storecontract`` with
the gateway and imports nothing of ``edge``.
"""

__version__ = "0.1.0"
