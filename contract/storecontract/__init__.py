"""The contract between a store's gateway and the retailer's cloud, in code (docs/sync-openapi.yaml in prose).

``purposes``: consent purposes; ``sync``: what a pulled change is about and the class of a pushed event;
``offers``: one catalog offer; ``profiles``: the profile fields a store may hold. No eager imports:
``purposes``, ``sync`` and ``profiles`` cost no pydantic.
"""
