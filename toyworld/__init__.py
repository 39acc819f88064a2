"""The synthetic toy world: its entities and relations (`world`), the sentence templates
(`templates`), the training corpus rendered from it (`corpus`) and the lm-eval tasks that
probe it (`tasks`). Used by train/sources.py (documents), harness/data_prep.py (cache keys,
generated tasks) and `harness tasks`; it knows nothing of training or of lm-eval's runner.
"""
