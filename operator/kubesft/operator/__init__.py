"""The kubesft operator: reconciles SFTDataset and SFTJob into Jobs and status.

Layers import downward only: `handlers` (kopf decorators) → `reconcile_*` (I/O against
the apiserver) → `build_*` / `derive_*` (pure: API models in, manifests or status out).
"""
