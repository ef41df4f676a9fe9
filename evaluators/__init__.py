"""What a candidate is worth: train, distil, prune, quantize, export, then measure the artifact.

Never imports Optuna: a candidate is a plain config, evaluated the same way from any caller.
"""
