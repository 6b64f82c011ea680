"""pgdrill's Chaos Toolkit probes: cluster health, SQL, backups and verification."""
