"""Training and evaluation data, without torch: MovieNet-style trees (``tree`` reads them,
``writer`` writes them, ``check`` validates them, ``ingest`` adds the user's videos), synthetic
films and corpora (``synth``, ``pictures``, ``corpus``) and SCRL's puzzles (``puzzles``)."""
