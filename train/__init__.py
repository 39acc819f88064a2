"""From raw text to a trained checkpoint: sources, tokenizer, token cache, mixture, model, loop.

Takes plain dataclasses (`train.specs`); knows nothing of Hydra.
"""
