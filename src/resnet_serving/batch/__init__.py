"""Offline batch inference over S3 or ``file://``: ``resnet-serving batch run`` (issue #30, first increment).

:mod:`.shard` decides which keys a shard owns; :mod:`.run` classifies them, resumably, into JSON Lines. Objects are
reached through :mod:`resnet_serving.store.objects` (S3 only through the store), the model as ``serve`` runs it
(:mod:`resnet_serving.inference`).
"""
