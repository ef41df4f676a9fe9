"""The user's own trained model as a family of candidates: named by a spec, rebuilt as an
``nn.Module``, cut into stage groups, pruned structurally and quantized per group."""
