"""The models: which one ``--model`` picks, the offline encoders, BaSSL, checkpoints, weights.

``scorers`` resolves ``--model`` and builds a scorer; ``classic`` and ``effnet`` are the shot
encoders that need no download and ``links`` their boundary scorer; ``config``, ``bassl``,
``runner``, ``inference`` and ``checkpoints`` are the BaSSL network, how it runs and how it is
stored; ``hub`` is the weights registry and downloader; ``transnet`` the learned shot detector.
Modules that import torch at the top (``bassl``, ``runner``, ``inference``, ``checkpoints``,
``effnet``, ``transnet``'s network) are imported only where a network is used.
"""
