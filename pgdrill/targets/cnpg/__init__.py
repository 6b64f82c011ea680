"""The `cnpg` target: drills on a real CloudNativePG cluster.

So far: the manifests a drill would create (pgdrill.targets.cnpg.manifests), validated against
CNPG's CRDs shipped in `crds/` (see its README for origin and licence), and `pgdrill plan`.
Contacting a cluster is not built yet."""
