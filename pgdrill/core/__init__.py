"""Shared plumbing with no pgdrill knowledge: errors an operator can act on, progress
output, atomic files, times, polling with deadlines, processes, typed values."""
