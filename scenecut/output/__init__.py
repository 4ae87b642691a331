"""What a result becomes: scene lists in every format, clips, the HTML report, still images,
and reading saved results and scene lists back (``readers``)."""
