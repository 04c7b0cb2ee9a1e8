"""The context a decision uses besides the shopper's profile (docs/context.md): the store's weather, what the
shopper has in hand this visit, and what sells in this store this week. ``StoreContext`` (``service``) is
the part a generation builds; ``weather``, ``basket`` and ``trends`` are its pure pieces."""
