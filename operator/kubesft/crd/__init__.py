"""CRD generation: the kubesft API models rendered as CustomResourceDefinitions."""

from kubesft.crd.generate import build_crd, build_crds, render_crds, write_crds

__all__ = ["build_crd", "build_crds", "render_crds", "write_crds"]
