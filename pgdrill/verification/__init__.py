"""Is a restored copy right: the checklist, table fingerprints, pg_amcheck and RPO as lost
acknowledged writes."""
