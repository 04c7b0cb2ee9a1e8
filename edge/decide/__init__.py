"""Offer decisions: catalog, features, the model's manifest, the ONNX scorer, the policy and the model store.

Nothing is re-exported: import the submodule that owns a name, so that importing the catalog or the manifest
(``check-config``) does not load numpy and onnxruntime.
"""
