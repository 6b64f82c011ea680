"""PostgreSQL itself: where its programs live and which major, how it replicated, and
the heap page a physical corruption hits."""
