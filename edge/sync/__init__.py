"""Cloud sync: pull changes by cursor, push the outbox, fetch profiles on a cache miss."""
