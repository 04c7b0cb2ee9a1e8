"""The reference cloud profile store (docs/profile-store.md): the sync contract served over HTTP for real.

``server.serve(url, admin_token=...)`` runs it; ``server.create_app`` and ``storage.open_storage`` are the
pieces. Storage is SQLite (one process) or PostgreSQL (stateless replicas on one database).
"""
