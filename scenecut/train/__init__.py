"""Training: the run configuration (``config``, no torch), one loop for every task (``loop``),
optimisers (``optim``), datasets (``datasets``), shot features (``features``), fine-tuning
(``finetune``), pre-training (``pretrain`` with the objectives of ``pretext`` and ``scrl``) and
what each torchrun worker runs (``entry``)."""
